// Package persist is what lives on disk under the node's root directory:
//
//	identity.key        the node's Ed25519 key (PKCS#8 PEM, mode 0600)
//	megaengine.db       the bbolt store: buckets nodes, repos, repoorder (the
//	                    listing's index, repoindex.go), refs (mirror records),
//	                    announcements, transfers, meta
//	repos/<did:repo>.git bare mirrors: of this node's repositories (MirrorFrom)
//	                    and of others' (ApplyBundle)
//	cache/<did:repo>-<key>.bundle  bundles this node serves, built once per
//	                    (repository, refs, haves) and evicted least recently
//	                    used first (BundleCache); build-*.tmp while git writes one
//	cache/<did:repo>-<key>.manifest  beside a full bundle kept for the swarm,
//	                    the manifest its builder signed (pieces.go)
//	tmp/<did:repo>.part the bundle a fetch is receiving, kept for a resume
//	tmp/<did:repo>.swarm(.pieces)  the bundle a swarm fetch receives piece by
//	                    piece, and the record of the pieces checked (PieceFile)
//	tmp/<did:repo>.incoming.git  the quarantine a fetch indexes its pack
//	                    into; moved into the mirror only once every check passed
//	menode.sock         the control socket while a node runs
//
// Every path under the root is built in paths.go, and nowhere else.
//
// It holds the identity key file, the bbolt store and the git operations,
// which go through the git command: reading a repository's refs, mirrors,
// bundles (create, parse, check and apply against creator-signed refs),
// clones and pulls. Every identifier that reaches a file path here is a
// parsed wire type, never a raw string; every ref name and object ID that
// reaches git is checked first.
//
// A damaged megaengine.db is one error wrapping ErrCorruptStore, never a
// crash: every bbolt call runs guarded (corrupt.go), and a listing leaves
// out a record that does not decode rather than failing. Paths in errors
// are quoted when they hold anything but printable text (QuotePath).
//
// persist must not import actors and does no networking.
package persist
