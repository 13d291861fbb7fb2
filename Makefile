# menode: see README.md.
GO       ?= go
BIN      := cmd/menode/menode
HELPER   := cmd/git-remote-menode/git-remote-menode
# make install copies both binaries into $(DESTDIR)$(BINDIR) (by default
# ~/.local/bin, no sudo): put BINDIR on PATH. GNU's convention: PREFIX is
# the tree, BINDIR its bin/, DESTDIR a staging root for packagers.
PREFIX   ?= $(HOME)/.local
BINDIR   ?= $(PREFIX)/bin
DESTDIR  ?=
# make run's UDP address and root, when given: make run ADDR=127.0.0.1:9000
# ROOT=/tmp/n1. Without ADDR the node listens on 0.0.0.0:9000, every interface.
ADDR     ?=
ROOT     ?=
PKGS     := ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12

.PHONY: build install run demo test bench lint proto fuzz stress screenshot clean

# The node and CLI, and the git remote helper (git clone menode::did:repo:…).
build:
	$(GO) build -o $(BIN) ./cmd/menode
	$(GO) build -o $(HELPER) ./cmd/git-remote-menode

# Both binaries into BINDIR (default ~/.local/bin), which git needs on PATH
# to find git-remote-menode: make install PREFIX=/usr/local puts them in
# /usr/local/bin.
install: build
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(BIN) $(HELPER) $(DESTDIR)$(BINDIR)/

# A node: root ROOT (default ~/.megaengine, or $$MEGAENGINE_ROOT), UDP ADDR
# (default 0.0.0.0:9000, every interface).
run: build
	$(abspath $(BIN)) $(if $(ROOT),--root '$(ROOT)') run $(if $(ADDR),--addr '$(ADDR)')

# Two nodes on loopback in a temp dir: one adds a repository, the other learns of it.
demo: build
	scenarios/demo.sh

# vet + unit tests with the race detector + every scenario (real processes, real git),
# then the 100-node cluster test without the race detector (under it, a
# 100-node cluster takes minutes to start on two cores; the race build runs
# it on 20). One package at a time (-p 1): the scenarios assert "within 5 s"
# and should not share two cores with the cluster test.
# -timeout is a guard against a hang, not a time target: on a quiet
# two-core machine the scenarios take 3 to 4 minutes, beside heavy load
# (load average 25-40) over 12.
# TESTFLAGS go to both go test runs (.ci/run passes -count=1: no cached
# results).
TESTFLAGS ?=
test:
	$(GO) vet $(PKGS)
	$(GO) vet -tags soak ./scenarios
	$(GO) test -race -p 1 -timeout 20m $(TESTFLAGS) $(PKGS)
	$(GO) test -count=1 -timeout 5m $(TESTFLAGS) -run '^TestCluster' ./actors

# Benchmarks against git's own transport (README, "Performance"): real menode
# processes, real git and git daemon, all on 127.0.0.1. Tens of minutes;
# BENCH_QUICK=1 make bench runs a smaller version in under three. Not part of
# make test, which still vets and compiles them.
bench:
	$(GO) run ./scenarios/bench

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

# Regenerates wire/megaengine.pb.go; needs protoc (apt install protobuf-compiler).
proto:
	$(GO) install $(PROTOC_GEN_GO)
	PATH=$$($(GO) env GOPATH)/bin:$$PATH protoc --go_out=. --go_opt=paths=source_relative wire/megaengine.proto

# Fuzzes every decoder of remote bytes (frames, Hello, signed announcements,
# transfer frames, did:key and did:repo, bundle headers) for FUZZTIME each,
# one after another. The seeds, and crashers kept under testdata/fuzz, run in
# make test.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME) ./wire
	$(GO) test -run '^$$' -fuzz '^FuzzHello$$' -fuzztime $(FUZZTIME) ./wire
	$(GO) test -run '^$$' -fuzz '^FuzzOpenAnnouncement$$' -fuzztime $(FUZZTIME) ./wire
	$(GO) test -run '^$$' -fuzz '^FuzzReconcile$$' -fuzztime $(FUZZTIME) ./wire
	$(GO) test -run '^$$' -fuzz '^FuzzTransferRequest$$' -fuzztime $(FUZZTIME) ./wire
	$(GO) test -run '^$$' -fuzz '^FuzzTransferStart$$' -fuzztime $(FUZZTIME) ./wire
	$(GO) test -run '^$$' -fuzz '^FuzzParseNodeID$$' -fuzztime $(FUZZTIME) ./wire
	$(GO) test -run '^$$' -fuzz '^FuzzParseRepoID$$' -fuzztime $(FUZZTIME) ./wire
	$(GO) test -run '^$$' -fuzz '^FuzzReadBundleHeader$$' -fuzztime $(FUZZTIME) ./persist

# The long runs, before resolving hardening work: the receiving node killed
# with -9 20 times in a sync (3 times in make test; -v prints the seed and
# every kill point), the hostile flood at full size (2000 connections, a
# 60,000-announcement fill; a tenth of it in make test), a node idle
# with 100,000 learned repositories (under 100 MiB; 5,000 in make test),
# the soak (SOAK long: 20 honest nodes and 5 hostile peers, the node's
# RSS, goroutines, open files and store size flat over the last two
# thirds), then every fuzz target for five minutes each.
SOAK ?= 30m
stress:
	MENODE_STRESS=1 $(GO) test -race -count=1 -v -timeout 30m -run '^TestCrash_killReceiver$$' ./scenarios
	MENODE_STRESS=1 $(GO) test -count=1 -v -timeout 30m -run '^TestHardening_attack$$' ./scenarios
	MENODE_STRESS=1 $(GO) test -count=1 -v -timeout 20m -run '^TestMemory_learnedRepos$$' ./scenarios
	$(GO) vet -tags soak ./scenarios
	MENODE_SOAK=$(SOAK) $(GO) test -tags soak -count=1 -v -timeout 60m -run '^TestSoak$$' ./scenarios
	$(MAKE) fuzz FUZZTIME=5m

# The status page's screenshot in the README (actors/web/screenshot.png):
# the browser test drives headless Chromium (apt install chromium) through
# the page of an in-process node during a transfer and keeps its picture.
screenshot:
	MENODE_SCREENSHOT=$(CURDIR)/actors/web/screenshot.png $(GO) test -count=1 -run '^TestPage_inBrowser$$' ./actors/web

clean:
	rm -f $(BIN) $(HELPER)
