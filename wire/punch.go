package wire

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
)

// Limits of a PunchRequest (PROTOCOL.md, "Hole punching").
const (
	MaxPunchAddrs  = 4
	PunchNonceSize = 16
)

// punchDomain is signed in front of every punch payload.
const punchDomain = "megaengine/punch/v1\x00"

// ErrBadPunch is wrapped when a PunchRequest is malformed, stale, or
// its signature does not verify.
var ErrBadPunch = errors.New("invalid punch request")

// SignPunch signs body (From must be priv's did:key) into a PunchRequest.
func SignPunch(priv ed25519.PrivateKey, body *PunchBody) (*PunchRequest, error) {
	if body.GetFrom() != NodeIDFromKey(priv.Public().(ed25519.PublicKey)).String() {
		return nil, fmt.Errorf("sign punch: from is not the signer: %w", ErrBadPunch)
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("sign punch: %w", err)
	}
	return &PunchRequest{Payload: payload, Signature: ed25519.Sign(priv, append([]byte(punchDomain), payload...))}, nil
}

// OpenPunch verifies a PunchRequest: it decodes, from and to parse and
// differ, the signature verifies under from, the timestamp is within
// maxAge of now, the nonce is 16 bytes and there are at most 4 valid
// addresses. It returns the body and both node IDs.
func OpenPunch(r *PunchRequest, now time.Time, maxAge time.Duration) (*PunchBody, NodeID, NodeID, error) {
	fail := func(format string, a ...any) (*PunchBody, NodeID, NodeID, error) {
		return nil, NodeID{}, NodeID{}, fmt.Errorf("punch request: %s: %w", fmt.Sprintf(format, a...), ErrBadPunch)
	}
	if len(r.GetPayload()) > MaxFrameSize/4 {
		return fail("payload of %d bytes", len(r.GetPayload()))
	}
	b := new(PunchBody)
	if err := proto.Unmarshal(r.GetPayload(), b); err != nil {
		return fail("decode: %v", err)
	}
	from, err := ParseNodeID(b.GetFrom())
	if err != nil {
		return fail("from: %v", err)
	}
	to, err := ParseNodeID(b.GetTo())
	if err != nil || to == from {
		return fail("to %q", SafeText(b.GetTo()))
	}
	if len(r.GetSignature()) != ed25519.SignatureSize || !ed25519.Verify(from.PublicKey(), append([]byte(punchDomain), r.GetPayload()...), r.GetSignature()) {
		return fail("from %s: %v", from, ErrBadSignature)
	}
	if age := now.Sub(time.UnixMilli(b.GetTimestampMs())); age > maxAge || age < -maxAge {
		return fail("from %s: %s old", from, age.Round(time.Second))
	}
	if len(b.GetNonce()) != PunchNonceSize {
		return fail("nonce of %d bytes", len(b.GetNonce()))
	}
	if len(b.GetAddrs()) > MaxPunchAddrs {
		return fail("%d addresses", len(b.GetAddrs()))
	}
	for _, a := range b.GetAddrs() {
		if err := CheckDialAddr(a); err != nil {
			return fail("address: %v", err)
		}
	}
	return b, from, to, nil
}
