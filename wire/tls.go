package wire

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ALPN is the TLS application protocol negotiated on every menode QUIC
// connection.
const ALPN = "megaengine/1"

// ProtocolVersion is the Hello.protocol value this implementation speaks.
const ProtocolVersion = 3

// ErrIdentityMismatch is wrapped when a peer's certificate key is not the
// node that was dialed.
var ErrIdentityMismatch = errors.New("peer identity mismatch")

// errBadPeerCert is wrapped by every rejection of a peer certificate that is
// not an identity mismatch.
var errBadPeerCert = errors.New("bad peer certificate")

// NewCertificate makes a self-signed X.509 certificate for priv's public key,
// in memory. The certificate carries no trust: peers check only that it is
// self-signed by an Ed25519 key, and take that key as the node's identity
// (the TLS 1.3 CertificateVerify proves possession of the private key).
func NewCertificate(priv ed25519.PrivateKey) (tls.Certificate, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return tls.Certificate{}, fmt.Errorf("new certificate: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("new certificate: serial: %w", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: NodeIDFromKey(pub).String()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("new certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("new certificate: parse: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// ServerConfig returns the TLS configuration a node listens with: TLS 1.3
// only, ALPN megaengine/1, and a client certificate required and checked by
// verifyPeerCert. Any node may connect; PeerID tells who it is.
func ServerConfig(priv ed25519.PrivateKey) (*tls.Config, error) {
	cert, err := NewCertificate(priv)
	if err != nil {
		return nil, err
	}
	return ServerConfigWith(cert), nil
}

// ServerConfigWith is ServerConfig with a certificate made once by
// NewCertificate.
func ServerConfigWith(cert tls.Certificate) *tls.Config {
	conf := baseConfig(cert, NodeID{})
	conf.ClientAuth = tls.RequireAnyClientCert
	return conf
}

// ClientConfig returns the TLS configuration a node dials with. The server's
// certificate gets the same checks as in ServerConfig; when expect is not
// zero its key must be expect, or the handshake fails with an error wrapping
// ErrIdentityMismatch. There is no CA: InsecureSkipVerify only turns off the
// standard chain verification, which verifyPeerCert replaces.
func ClientConfig(priv ed25519.PrivateKey, expect NodeID) (*tls.Config, error) {
	cert, err := NewCertificate(priv)
	if err != nil {
		return nil, err
	}
	return ClientConfigWith(cert, expect), nil
}

// ClientConfigWith is ClientConfig with a certificate made once by
// NewCertificate: a node dials often, and signs a certificate only at
// start.
func ClientConfigWith(cert tls.Certificate, expect NodeID) *tls.Config {
	conf := baseConfig(cert, expect)
	conf.InsecureSkipVerify = true
	return conf
}

// baseConfig is what both sides share: TLS 1.3 only, ALPN, our certificate,
// and the peer's certificate checked by verifyPeerCert against expect.
func baseConfig(cert tls.Certificate, expect NodeID) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		Certificates: []tls.Certificate{cert},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyPeerCert(raw, expect)
			return err
		},
	}
}

// PeerID returns the NodeID of the peer of a completed handshake made with
// ServerConfig or ClientConfig.
func PeerID(cs tls.ConnectionState) (NodeID, error) {
	if len(cs.PeerCertificates) != 1 {
		return NodeID{}, fmt.Errorf("peer id: %d peer certificates, want 1: %w", len(cs.PeerCertificates), errBadPeerCert)
	}
	pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return NodeID{}, fmt.Errorf("peer id: certificate key is %T, want Ed25519: %w", cs.PeerCertificates[0].PublicKey, errBadPeerCert)
	}
	return NodeIDFromKey(pub), nil
}

// verifyPeerCert checks the raw certificates a peer presented: exactly one,
// with an Ed25519 key, validly self-signed, and (unless expect is zero) for
// the key expect.
func verifyPeerCert(raw [][]byte, expect NodeID) (NodeID, error) {
	if len(raw) != 1 {
		return NodeID{}, fmt.Errorf("peer presented %d certificates, want 1: %w", len(raw), errBadPeerCert)
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return NodeID{}, fmt.Errorf("parse peer certificate: %v: %w", err, errBadPeerCert)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return NodeID{}, fmt.Errorf("peer certificate key is %T, want Ed25519: %w", cert.PublicKey, errBadPeerCert)
	}
	// CheckSignatureFrom(cert) would refuse a self-signed cert that is not a CA.
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return NodeID{}, fmt.Errorf("peer certificate is not self-signed: %v: %w", err, errBadPeerCert)
	}
	id := NodeIDFromKey(pub)
	if !expect.IsZero() && id != expect {
		return id, fmt.Errorf("peer at handshake is %s, expected %s: %w", id, expect, ErrIdentityMismatch)
	}
	return id, nil
}
