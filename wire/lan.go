package wire

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
)

// MaxBeaconSize bounds an encoded LanBeacon (PROTOCOL.md, "LAN discovery").
const MaxBeaconSize = 512

// lanBeaconDomain is signed in front of every beacon payload, so that a
// beacon signature is never valid as an announcement's or anything else's.
const lanBeaconDomain = "megaengine/lan-beacon/v1\x00"

var (
	// ErrBadBeacon is wrapped when a datagram is not a well-formed beacon.
	ErrBadBeacon = errors.New("malformed beacon")
	// ErrStaleBeacon is wrapped when a correctly signed beacon's timestamp
	// is too far from the receiver's clock (a replay, or a wrong clock).
	ErrStaleBeacon = errors.New("beacon too old or from the future")
	// ErrBeaconVersion is wrapped when a beacon's sender speaks another
	// protocol version: there is no point dialing it.
	ErrBeaconVersion = errors.New("beacon of another protocol version")
)

// SignBeacon encodes and signs the beacon of the node holding priv, whose
// QUIC socket listens on port, at now.
func SignBeacon(priv ed25519.PrivateKey, port uint16, now time.Time) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize || port == 0 {
		return nil, fmt.Errorf("sign beacon: bad key or port 0: %w", ErrBadBeacon)
	}
	body := &LanBeaconBody{
		Did: NodeIDFromKey(priv.Public().(ed25519.PublicKey)).String(), Port: uint32(port),
		Protocol: ProtocolVersion, TimestampMs: now.UnixMilli(),
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("sign beacon: %w", err)
	}
	return proto.Marshal(&LanBeacon{Payload: payload, Signature: ed25519.Sign(priv, beaconSignedBytes(payload))})
}

// OpenBeacon checks a datagram received on the beacon port, in this
// order: size, decoding, the DID, the signature (ErrBadSignature), the
// protocol version (ErrBeaconVersion), the port, and a timestamp within
// maxAge of now either way (ErrStaleBeacon). Every other failure wraps
// ErrBadBeacon. A beacon that passes says only "a node holding this key
// signed this recently": the caller still dials with the DID expected, so
// the node at the address must prove the key.
func OpenBeacon(b []byte, now time.Time, maxAge time.Duration) (*LanBeaconBody, NodeID, error) {
	if len(b) > MaxBeaconSize {
		return nil, NodeID{}, fmt.Errorf("%d bytes, max %d: %w", len(b), MaxBeaconSize, ErrBadBeacon)
	}
	var env LanBeacon
	if err := proto.Unmarshal(b, &env); err != nil {
		return nil, NodeID{}, fmt.Errorf("decode: %v: %w", err, ErrBadBeacon)
	}
	body := new(LanBeaconBody)
	if err := proto.Unmarshal(env.GetPayload(), body); err != nil {
		return nil, NodeID{}, fmt.Errorf("decode payload: %v: %w", err, ErrBadBeacon)
	}
	id, err := ParseNodeID(body.GetDid())
	if err != nil {
		return nil, NodeID{}, fmt.Errorf("did: %v: %w", err, ErrBadBeacon)
	}
	if len(env.GetSignature()) != ed25519.SignatureSize || !ed25519.Verify(id.PublicKey(), beaconSignedBytes(env.GetPayload()), env.GetSignature()) {
		return nil, NodeID{}, fmt.Errorf("beacon from %s: %w", id, ErrBadSignature)
	}
	if body.GetProtocol() != ProtocolVersion {
		return nil, NodeID{}, fmt.Errorf("beacon from %s: protocol %d, we speak %d: %w", id, body.GetProtocol(), ProtocolVersion, ErrBeaconVersion)
	}
	if body.GetPort() == 0 || body.GetPort() > 65535 {
		return nil, NodeID{}, fmt.Errorf("beacon from %s: port %d: %w", id, body.GetPort(), ErrBadBeacon)
	}
	if age := now.Sub(time.UnixMilli(body.GetTimestampMs())); age > maxAge || age < -maxAge {
		return nil, NodeID{}, fmt.Errorf("beacon from %s: %s old: %w", id, age.Round(time.Second), ErrStaleBeacon)
	}
	return body, id, nil
}

func beaconSignedBytes(payload []byte) []byte {
	return append([]byte(lanBeaconDomain), payload...)
}
