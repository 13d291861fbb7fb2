// Package wire is everything of menode that crosses the network: the protobuf
// schema (megaengine.proto and the generated megaengine.pb.go), the framing of
// the control stream, the node and repository identifiers (did:key,
// did:repo), signed gossip announcements and their validity rules, and the
// identity-bound mutual TLS configuration for QUIC. PROTOCOL.md in this
// directory is the prose specification another implementation could follow.
//
// Every function here treats its input as coming from a hostile peer: sizes
// are checked before allocation, signatures before content, and every
// identifier is parsed into NodeID or RepoID before it is used.
//
// wire must not do I/O beyond the io.Reader or io.Writer it is given: it
// opens no sockets or files (the TLS configs it builds are used by the
// caller's QUIC transport), keeps no state between calls, and takes the
// current time as a parameter where a rule depends on it. It must never
// import actors or persist; they import wire.
package wire
