// Package persist is what lives on disk under the node's root directory:
//
//	identity.key        the node's Ed25519 key (PKCS#8 PEM, mode 0600)
//	megaengine.db       the bbolt store: buckets nodes, repos, refs, announcements, meta
//	repos/<did:repo>.git bare mirrors of other nodes' repositories (with bundle transfer)
//	menode.sock         the control socket while a node runs
//
// It holds the identity key file, the bbolt store and the git operations,
// which go through the git command. Every identifier that reaches a file
// path here is a parsed wire type, never a raw string.
//
// persist must not import actors and does no networking.
package persist
