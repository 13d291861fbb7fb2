package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
)

// profileEnv names a directory where `menode run` writes, every
// profileEvery, a heap profile (heap-PID-N.pb.gz: the live heap as of the
// last collection, for go tool pprof), a CPU profile of that interval
// (cpu-PID-N.pb.gz) and a line of the runtime's and the kernel's memory
// figures (mem-PID.log). For measurements (the hostile-flood harness,
// scenarios/attack_test.go); off when unset.
const profileEnv = "MENODE_PROFILE"

const profileEvery = 5 * time.Second

// startProfile starts the profiler when profileEnv is set; the
// returned function stops it.
func startProfile(log *slog.Logger) (stop func()) {
	dir := os.Getenv(profileEnv)
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Warn("memory profile off", "err", err)
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		pid := os.Getpid()
		figures, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("mem-%d.log", pid)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Warn("memory profile off", "err", err)
			return
		}
		defer figures.Close()
		start := time.Now()
		tick := time.NewTicker(profileEvery)
		defer tick.Stop()
		for n := 0; ; n++ {
			cpu, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%d-%03d.pb.gz", pid, n)))
			if err == nil && pprof.StartCPUProfile(cpu) != nil {
				cpu.Close()
				cpu = nil
			}
			stopCPU := func() {
				if cpu != nil {
					pprof.StopCPUProfile()
					cpu.Close()
				}
			}
			writeHeapProfile(filepath.Join(dir, fmt.Sprintf("heap-%d-%03d.pb.gz", pid, n)))
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Fprintf(figures, "t=%.0fs heap_alloc=%d heap_inuse=%d heap_idle_unreleased=%d stack=%d sys=%d next_gc=%d goroutines=%d gc=%d gc_cpu=%.3f %s\n",
				time.Since(start).Seconds(), m.HeapAlloc>>20, m.HeapInuse>>20, (m.HeapIdle-m.HeapReleased)>>20, m.StackInuse>>20,
				m.Sys>>20, m.NextGC>>20, runtime.NumGoroutine(), m.NumGC, m.GCCPUFraction, procMemory())
			select {
			case <-done:
				stopCPU()
				return
			case <-tick.C:
				stopCPU()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup("heap").WriteTo(f, 0)
}

// procMemory is the kernel's figures of this process (MiB): resident,
// its anonymous and file-backed parts, and the peak.
func procMemory() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch name {
		case "VmRSS", "RssAnon", "RssFile", "VmHWM":
			var kb int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(value), " kB"), &kb)
			out = append(out, fmt.Sprintf("%s=%d", strings.ToLower(name), kb>>10))
		}
	}
	return strings.Join(append(out, mappedFiles()...), " ")
}

// mappedFiles is the resident MiB of each file this process maps (the
// binary, the store), from /proc/self/smaps.
func mappedFiles() []string {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil
	}
	kb := map[string]int64{}
	var file string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-"):
			file = ""
			if len(fields) >= 6 {
				file = filepath.Base(fields[5])
			}
		case len(fields) >= 2 && fields[0] == "Rss:" && file != "":
			var n int64
			fmt.Sscan(fields[1], &n)
			kb[file] += n
		}
	}
	var out []string
	for f, n := range kb {
		if n >= 1024 {
			out = append(out, fmt.Sprintf("%s=%d", f, n>>10))
		}
	}
	return out
}
