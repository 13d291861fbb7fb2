package actors

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// The sync actor's side of the bundle cache (persist.BundleCache): it
// decides when a bundle is built, so that each is built once however many
// serving transfers ask for it meanwhile; the cache does the disk and git
// work, in goroutines.

// Messages of the sync actor about bundles.
type (
	// bundleFor asks for a bundle of refs minus haves (a serving transfer
	// asks its parent). Reply: *bundleReady.
	bundleFor struct {
		Repo  wire.RepoID
		Refs  map[string]string
		Haves []string
	}
	bundleReady struct {
		ID   persist.BundleKey
		Path string // the cached bundle; an empty file means "nothing to send"
		// Build is set while git still writes the bundle: it is sent as
		// it grows (see persist.BundleBuild).
		Build *persist.BundleBuild
	}
	// bundleBuilt: a cache build finished.
	bundleBuilt struct {
		key persist.BundleKey
		err error
	}
	// bundleCached: whether a bundle is in the cache, looked up off the mailbox.
	bundleCached struct {
		path string
		ok   bool
	}
)

// errBuildsBusy: as many bundles are being built as uploads may run.
var errBuildsBusy = errors.New("too many bundles being built at once")

// bundleFor answers with a cached bundle, or with one being built.
func (s *syncer) bundleFor(ctx actor.Context, m *bundleFor) {
	reply := replier(ctx)
	key := persist.NewBundleKey(m.Repo, m.Refs, m.Haves)
	if b := s.building[key]; b != nil {
		s.counts.CacheHits++ // built once for every transfer that asks meanwhile
		reply(&bundleReady{ID: key, Path: b.Path, Build: b})
		return
	}
	cache := s.cache
	asyncFor(ctx, s.cfg.WorkTimeout, func() (*bundleCached, error) {
		path, ok := cache.Lookup(m.Repo, key)
		return &bundleCached{path: path, ok: ok}, nil
	}, func(c *bundleCached, _ error) {
		if c != nil && c.ok {
			s.counts.CacheHits++
			reply(&bundleReady{ID: key, Path: c.path})
			return
		}
		if b := s.building[key]; b != nil { // another request started it meanwhile
			s.counts.CacheHits++
			reply(&bundleReady{ID: key, Path: b.Path, Build: b})
			return
		}
		if len(s.building) >= s.cfg.MaxUploads {
			// A build goes on after the request that started it has
			// gone: without a cap, requests dropped at once would each
			// leave a git process behind.
			reply(errBuildsBusy)
			return
		}
		reply(&bundleReady{ID: key, Path: cache.Path(m.Repo, key), Build: s.build(ctx, m, key)})
	})
}

// build starts building a bundle into the cache.
func (s *syncer) build(ctx actor.Context, m *bundleFor, key persist.BundleKey) *persist.BundleBuild {
	s.counts.CacheMisses++
	b := s.cache.NewBuild(m.Repo, key)
	s.building[key] = b
	mirror := persist.GitRepo{Dir: persist.MirrorPath(s.cfg.Root, m.Repo)}
	haves, refs := slices.Clone(m.Haves), maps.Clone(m.Refs)
	self, root := ctx.Self(), ctx.ActorSystem().Root
	work, timeout := s.runCtx, s.cfg.WorkTimeout
	signer, pieceSize := s.key, s.cfg.PieceSize
	go func() {
		wctx, cancel := context.WithTimeout(work, timeout)
		defer cancel()
		err := b.Run(wctx, mirror, refs, haves)
		if err == nil && len(haves) == 0 && signer != nil {
			// A full bundle: its manifest makes it a swarm bundle (sync_swarm.go).
			if _, man, err := manifestFor(wctx, signer, pieceSize, b.Path, m.Repo, wire.RefsHash(refs)); err == nil {
				root.Send(self, &bundleKept{ID: m.Repo, Ad: adOf(man)})
			}
		}
		root.Send(self, &bundleBuilt{key: key, err: err})
	}()
	return b
}

func (s *syncer) built(m *bundleBuilt) {
	delete(s.building, m.key)
	if m.err != nil {
		s.log.Warn("sync: bundle build failed", "err", m.err)
		return
	}
	go s.cache.Evict()
}
