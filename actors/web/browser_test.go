package web

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/actorstest"
)

// The page in a real browser: headless Chromium driven by chromedp. make
// screenshot runs TestPage_inBrowser with MENODE_SCREENSHOT set to the
// committed PNG's path; otherwise screenshots go to the test's temp dir.

// browser starts headless Chromium (as root it needs --no-sandbox) with
// its profile in the test's temp dir. A browser that cannot start fails
// the test with the reason: the page is not tested without one.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if path := os.Getenv("MENODE_CHROMIUM"); path != "" {
		opts = append(opts, chromedp.ExecPath(path))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser; it must not have a timeout of
	// its own (that would stop the browser when it passes).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start headless Chromium (Debian: apt-get install chromium; or set MENODE_CHROMIUM to its path): %v", err)
	}
	return ctx
}

// evaluate runs a JavaScript expression in the page and stores its value.
func evaluate(ctx context.Context, js string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](js))
	if err != nil {
		return err
	}
	return json.Unmarshal(v, out)
}

// open loads url in the browser.
func open(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(c, chromedp.Navigate(url)); err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
}

// waitFor polls a JavaScript condition in the page until it is true.
func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, what, js string) {
	t.Helper()
	err := actorstest.Poll(timeout, 100*time.Millisecond, what, func() (bool, error) {
		var ok bool
		if err := evaluate(ctx, js, &ok); err != nil {
			return false, err
		}
		return ok, nil
	})
	if err != nil {
		var state string
		_ = evaluate(ctx, `document.getElementById("state").textContent`, &state)
		t.Fatalf("%v (page says %q)", err, state)
	}
}

// screenshot saves the whole page as a PNG in dir, and also at
// $MENODE_SCREENSHOT when keep is set (make screenshot).
func screenshot(t *testing.T, ctx context.Context, dir string, keep bool) string {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	path := filepath.Join(dir, "status-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := os.Getenv("MENODE_SCREENSHOT"); keep && out != "" {
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", out)
	}
	return path
}

// TestPage_inBrowser loads the status page of a node with two peers and a
// synced repository and waits for the peers table and the repository row;
// then watches a throttled transfer's progress bar move on another node's
// page.
func TestPage_inBrowser(t *testing.T) {
	dir := t.TempDir()
	ctx := browser(t)

	// n0 creates the repositories; n1 fetches all; n2 seeds only what it
	// follows, so it never serves the large one.
	n0 := startNode(t, dir, "n0", nil, nil)
	n1 := startNode(t, dir, "n1", []*testNode{n0}, nil)
	n2 := startNode(t, dir, "n2", []*testNode{n0}, func(c *actors.Config) { c.Seed = actors.SeedFollowed })
	small := addRepo(t, n0, filepath.Join(dir, "hello"), "hello, browser\n", 0)
	waitStatus(t, n2, small, actors.StatusMissing, 20*time.Second)
	if _, err := n2.Request(&actors.FollowRepo{ID: small, Follow: true}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, n1, small, actors.StatusSynced, 20*time.Second)
	waitStatus(t, n2, small, actors.StatusSynced, 20*time.Second)

	t.Run("peers and repository", func(t *testing.T) {
		open(t, ctx, n1.URL+"?refresh=200")
		waitFor(t, ctx, 20*time.Second, "the peers table lists n0 and n2",
			fmt.Sprintf(`!!document.querySelector('#peers tr[data-peer=%q]') && !!document.querySelector('#peers tr[data-peer=%q]') && document.querySelectorAll('#peers tr[data-peer]').length === 2`, n0.ID, n2.ID))
		waitFor(t, ctx, 20*time.Second, "the repository row says synced",
			fmt.Sprintf(`!!document.querySelector('#repos tr[data-repo=%q][data-status="synced"]')`, small))
		var clone string
		if err := evaluate(ctx, fmt.Sprintf(`document.querySelector('#repos tr[data-repo=%q] .clone code').textContent`, small), &clone); err != nil {
			t.Fatal(err)
		}
		if want := "menode repo clone --repo-id " + small.String() + " --output hello"; clone != want {
			t.Errorf("clone command %q, want %q", clone, want)
		}
		path := screenshot(t, ctx, t.TempDir(), false)
		t.Logf("screenshot: %s", path)

		// The repository's page lists the commit read from n1's mirror.
		open(t, ctx, n1.URL+"repo/"+small.String()+"?refresh=200")
		waitFor(t, ctx, 20*time.Second, "the repository page lists the commit", `[...document.querySelectorAll('#commits tbody td')].some(td => td.textContent === "first")`)
	})

	t.Run("transfer progress", func(t *testing.T) {
		// n1 fetches the large repository from n0, the only node that has
		// it, so n0 keeps that bundle in its cache; then n1 stops. n3
		// (throttled, and fetching only what it follows) can then only
		// fetch it from n0, whose cached bundle has a known size: the bar
		// shows a percentage.
		big := addRepo(t, n0, filepath.Join(dir, "large"), "large\n", 1536<<10)
		waitStatus(t, n1, big, actors.StatusSynced, 30*time.Second)
		n1.stop()
		n3 := startNode(t, dir, "n3", []*testNode{n0, n2}, func(c *actors.Config) {
			c.MaxDownloadRate, c.Seed = 256<<10, actors.SeedFollowed
		})
		waitStatus(t, n3, big, actors.StatusMissing, 20*time.Second)
		if _, err := n3.Request(&actors.FollowRepo{ID: big, Follow: true}); err != nil {
			t.Fatal(err)
		}
		open(t, ctx, n3.URL+"?refresh=200")
		bar := fmt.Sprintf(`document.querySelector('.transfer[data-repo=%q]')`, big)
		percent := func() (float64, string) {
			var p float64
			var width string
			if err := evaluate(ctx, fmt.Sprintf(`(() => { const e = %s; return e && e.dataset.percent ? Number(e.dataset.percent) : -1 })()`, bar), &p); err != nil {
				t.Fatal(err)
			}
			if err := evaluate(ctx, fmt.Sprintf(`(() => { const e = %s; return e ? e.querySelector('.fill').style.width : "" })()`, bar), &width); err != nil {
				t.Fatal(err)
			}
			return p, width
		}
		var first float64
		var firstWidth string
		err := actorstest.Poll(30*time.Second, 50*time.Millisecond, "the transfer's bar shows a percentage", func() (bool, error) {
			first, firstWidth = percent()
			return first > 0 && first < 90, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var later float64
		var laterWidth string
		err = actorstest.Poll(30*time.Second, 50*time.Millisecond, fmt.Sprintf("the bar moves on from %.1f%%", first), func() (bool, error) {
			later, laterWidth = percent()
			return later > first && laterWidth != firstWidth, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("progress bar moved from %.1f%% (width %s) to %.1f%% (width %s)", first, firstWidth, later, laterWidth)
		// The bar names its phase, with the percentage, as the CLI does.
		var phase, label string
		if err := evaluate(ctx, fmt.Sprintf(`(() => { const e = %s; return e ? e.dataset.phase : "" })()`, bar), &phase); err != nil {
			t.Fatal(err)
		}
		if err := evaluate(ctx, fmt.Sprintf(`(() => { const e = %s; return e ? e.querySelector('.label .phase').textContent : "" })()`, bar), &label); err != nil {
			t.Fatal(err)
		}
		if phase != actors.PhaseReceiving || !strings.HasPrefix(label, "receiving") || !regexp.MustCompile(`\d+\.\d%$`).MatchString(label) {
			t.Errorf("the transfer shows phase %q, label %q; want receiving with a percentage", phase, label)
		}
		screenshot(t, ctx, t.TempDir(), true)
		waitFor(t, ctx, 30*time.Second, "the large repository is synced",
			fmt.Sprintf(`!!document.querySelector('#repos tr[data-repo=%q][data-status="synced"]') && !%s`, big, bar))
	})
}
