package wire

import "fmt"

// CheckHello checks the Hello a peer sent on a connection whose TLS
// certificate is peer's key (PROTOCOL.md section 3), in the order the
// specification gives: the protocol version (ERROR_VERSION), the alias
// (ERROR_PROTOCOL), then the DID against the certificate (ERROR_IDENTITY).
// It returns the code to close the connection with and why, or
// ERROR_UNSPECIFIED and nil for a Hello to accept. alias, version,
// listen_addrs and features are informational: a caller checks each
// listen address (CheckDialAddr) before it dials one.
func CheckHello(h *Hello, peer NodeID) (ErrorCode, error) {
	if h == nil {
		return ErrorCode_ERROR_PROTOCOL, fmt.Errorf("no hello")
	}
	if h.Protocol != ProtocolVersion {
		return ErrorCode_ERROR_VERSION, fmt.Errorf("protocol %d, we speak %d", h.Protocol, ProtocolVersion)
	}
	if err := CheckAlias(h.Alias); err != nil {
		return ErrorCode_ERROR_PROTOCOL, err
	}
	if h.Did != peer.String() {
		return ErrorCode_ERROR_IDENTITY, fmt.Errorf("hello says %q but the certificate is %s", SafeText(h.Did), peer)
	}
	return ErrorCode_ERROR_UNSPECIFIED, nil
}
