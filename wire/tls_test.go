package wire

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// handshake runs a TLS handshake over loopback TCP (net.Pipe is unbuffered
// and deadlocks when both sides write a flight at once) and returns each
// side's result. The server writes one byte after its handshake so that the
// client, in TLS 1.3, observes a rejection of its certificate on its first read.
func handshake(t *testing.T, serverConf, clientConf *tls.Config) (server, client *tls.Conn, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(5 * time.Second)
	done := make(chan error, 1)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		sc.SetDeadline(deadline)
		server = tls.Server(sc, serverConf)
		err = server.Handshake()
		if err == nil {
			_, err = server.Write([]byte{1})
		}
		if err != nil {
			sc.Close()
		}
		done <- err
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc.SetDeadline(deadline)
	client = tls.Client(cc, clientConf)
	clientErr = client.Handshake()
	if clientErr == nil {
		var b [1]byte
		_, clientErr = io.ReadFull(client, b[:])
	}
	if clientErr != nil {
		cc.Close()
	}
	serverErr = <-done
	t.Cleanup(func() {
		cc.Close()
		if server != nil {
			server.Close()
		}
	})
	return server, client, serverErr, clientErr
}

func mustServerConfig(t *testing.T, priv ed25519.PrivateKey) *tls.Config {
	t.Helper()
	c, err := ServerConfig(priv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustClientConfig(t *testing.T, priv ed25519.PrivateKey, expect NodeID) *tls.Config {
	t.Helper()
	c, err := ClientConfig(priv, expect)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// foreignCert makes a certificate for key, signed by signer (itself when
// signer is nil), with chainExtra extra copies appended to the chain.
func foreignCert(t *testing.T, key crypto.Signer, signer crypto.Signer, chainExtra int) tls.Certificate {
	t.Helper()
	if signer == nil {
		signer = key
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "foreign"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{der}
	for range chainExtra {
		chain = append(chain, der)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}
}

func TestNewCertificate_shape(t *testing.T) {
	_, priv := newKey(t)
	a, err := NewCertificate(priv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCertificate(priv)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(a.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	checks := []struct {
		name string
		ok   bool
	}{
		{"one certificate", len(a.Certificate) == 1},
		{"ed25519 key of the node", leaf.PublicKey.(ed25519.PublicKey).Equal(priv.Public())},
		{"self-signed", leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil},
		{"valid now", leaf.NotBefore.Before(now.Add(-59*time.Minute)) && leaf.NotAfter.After(now.Add(364*24*time.Hour))},
		{"not after one year", leaf.NotAfter.Before(now.Add(367 * 24 * time.Hour))},
		{"random serial", leaf.SerialNumber.Cmp(b.Leaf.SerialNumber) != 0},
		{"passes our own check", func() bool { _, err := verifyPeerCert(a.Certificate, NodeID{}); return err == nil }()},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Errorf("certificate fails %q", c.name)
			}
		})
	}
	t.Run("rejects short key", func(t *testing.T) {
		if _, err := NewCertificate(priv[:10]); err == nil {
			t.Error("NewCertificate accepted a 10-byte key")
		}
	})
}

func TestTLS_handshake(t *testing.T) {
	serverPub, serverPriv := newKey(t)
	clientPub, clientPriv := newKey(t)
	serverID, clientID := NodeIDFromKey(serverPub), NodeIDFromKey(clientPub)
	otherPub, otherPriv := newKey(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	withCert := func(c *tls.Config, cert tls.Certificate) *tls.Config {
		c = c.Clone()
		c.Certificates = []tls.Certificate{cert}
		return c
	}
	noCert := mustClientConfig(t, clientPriv, serverID)
	noCert.Certificates = nil

	cases := []struct {
		name                 string
		server, client       *tls.Config
		wantServer, wantClnt bool // handshake succeeds on that side
		wantMismatch         bool // client error wraps ErrIdentityMismatch
	}{
		{"right key", mustServerConfig(t, serverPriv), mustClientConfig(t, clientPriv, serverID), true, true, false},
		{"any server when expect is zero", mustServerConfig(t, serverPriv), mustClientConfig(t, clientPriv, NodeID{}), true, true, false},
		{"wrong expected key", mustServerConfig(t, serverPriv), mustClientConfig(t, clientPriv, NodeIDFromKey(otherPub)), false, false, true},
		{"client without certificate", mustServerConfig(t, serverPriv), noCert, false, false, false},
		{"client with ECDSA certificate", mustServerConfig(t, serverPriv), withCert(mustClientConfig(t, clientPriv, serverID), foreignCert(t, ecKey, nil, 0)), false, false, false},
		{"server with ECDSA certificate", withCert(mustServerConfig(t, serverPriv), foreignCert(t, ecKey, nil, 0)), mustClientConfig(t, clientPriv, NodeID{}), false, false, false},
		{"client cert signed by another key", mustServerConfig(t, serverPriv), withCert(mustClientConfig(t, clientPriv, serverID), foreignCert(t, clientPriv, otherPriv, 0)), false, false, false},
		{"client sends two certificates", mustServerConfig(t, serverPriv), withCert(mustClientConfig(t, clientPriv, serverID), foreignCert(t, clientPriv, nil, 1)), false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server, client, serr, cerr := handshake(t, tc.server, tc.client)
			if (serr == nil) != tc.wantServer {
				t.Errorf("server handshake error = %v, want success %v", serr, tc.wantServer)
			}
			if (cerr == nil) != tc.wantClnt {
				t.Errorf("client handshake error = %v, want success %v", cerr, tc.wantClnt)
			}
			if tc.wantMismatch {
				if !errors.Is(cerr, ErrIdentityMismatch) {
					t.Errorf("client error = %v, want ErrIdentityMismatch", cerr)
				}
				msg := cerr.Error()
				if !strings.Contains(msg, serverID.String()) || !strings.Contains(msg, NodeIDFromKey(otherPub).String()) {
					t.Errorf("mismatch error %q does not name both DIDs", msg)
				}
			} else if errors.Is(cerr, ErrIdentityMismatch) {
				t.Errorf("unexpected identity mismatch: %v", cerr)
			}
			if serr != nil || cerr != nil {
				return
			}
			if got := server.ConnectionState().NegotiatedProtocol; got != ALPN {
				t.Errorf("ALPN = %q, want %q", got, ALPN)
			}
			if got := server.ConnectionState().Version; got != tls.VersionTLS13 {
				t.Errorf("TLS version = %x, want TLS 1.3", got)
			}
			if got, err := PeerID(server.ConnectionState()); err != nil || got != clientID {
				t.Errorf("server PeerID = %s, %v; want %s", got, err, clientID)
			}
			if got, err := PeerID(client.ConnectionState()); err != nil || got != serverID {
				t.Errorf("client PeerID = %s, %v; want %s", got, err, serverID)
			}
		})
	}
}

func TestPeerID_rejects(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecLeaf, _ := x509.ParseCertificate(foreignCert(t, ecKey, nil, 0).Certificate[0])
	cases := []struct {
		name string
		cs   tls.ConnectionState
	}{
		{"no certificate", tls.ConnectionState{}},
		{"ECDSA key", tls.ConnectionState{PeerCertificates: []*x509.Certificate{ecLeaf}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if id, err := PeerID(tc.cs); err == nil {
				t.Errorf("PeerID = %s, want an error", id)
			}
		})
	}
}

func TestTLS_quic(t *testing.T) {
	serverPub, serverPriv := newKey(t)
	clientPub, clientPriv := newKey(t)
	serverID, clientID := NodeIDFromKey(serverPub), NodeIDFromKey(clientPub)
	otherPub, _ := newKey(t)

	ln, err := quic.ListenAddr("127.0.0.1:0", mustServerConfig(t, serverPriv), &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()

	type accepted struct {
		conn *quic.Conn
		err  error
	}
	acceptCh := make(chan accepted, 4)
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			acceptCh <- accepted{c, err}
			if err != nil {
				return
			}
		}
	}()
	dial := func(t *testing.T, conf *tls.Config) (*quic.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := quic.DialAddr(ctx, addr, conf, &quic.Config{})
		if c != nil {
			t.Cleanup(func() { c.CloseWithError(0, "") })
		}
		return c, err
	}

	t.Run("right key", func(t *testing.T) {
		c, err := dial(t, mustClientConfig(t, clientPriv, serverID))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		var a accepted
		select {
		case a = <-acceptCh:
		case <-time.After(5 * time.Second):
			t.Fatal("server never accepted")
		}
		if a.err != nil {
			t.Fatalf("accept: %v", a.err)
		}
		t.Cleanup(func() { a.conn.CloseWithError(0, "") })
		if got, err := PeerID(c.ConnectionState().TLS); err != nil || got != serverID {
			t.Errorf("client PeerID = %s, %v; want %s", got, err, serverID)
		}
		if got, err := PeerID(a.conn.ConnectionState().TLS); err != nil || got != clientID {
			t.Errorf("server PeerID = %s, %v; want %s", got, err, clientID)
		}
		if got := c.ConnectionState().TLS.NegotiatedProtocol; got != ALPN {
			t.Errorf("ALPN = %q, want %q", got, ALPN)
		}

		// A Hello frame crosses the control stream.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := c.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hello := &Frame{Body: &Frame_Hello{Hello: &Hello{Protocol: ProtocolVersion, Did: clientID.String()}}}
		if err := WriteFrame(s, hello); err != nil {
			t.Fatal(err)
		}
		ss, err := a.conn.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadFrame(bufio.NewReader(ss))
		if err != nil || got.GetHello().GetDid() != clientID.String() {
			t.Errorf("server read %v, %v; want the client's Hello", got, err)
		}
	})

	t.Run("wrong expected key", func(t *testing.T) {
		_, err := dial(t, mustClientConfig(t, clientPriv, NodeIDFromKey(otherPub)))
		if err == nil {
			t.Fatal("dial to the wrong key succeeded")
		}
		if !errors.Is(err, ErrIdentityMismatch) {
			t.Errorf("dial error = %v, want ErrIdentityMismatch", err)
		}
		if msg := err.Error(); !strings.Contains(msg, serverID.String()) || !strings.Contains(msg, NodeIDFromKey(otherPub).String()) {
			t.Errorf("dial error %q does not name both DIDs", msg)
		}
	})

	t.Run("client without certificate", func(t *testing.T) {
		conf := mustClientConfig(t, clientPriv, serverID)
		conf.Certificates = nil
		c, err := dial(t, conf)
		if err == nil {
			// TLS 1.3: the dial may complete before the server refuses; the
			// first stream read must fail then.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, serr := c.OpenStreamSync(ctx)
			if serr == nil {
				WriteFrame(s, &Frame{Body: &Frame_Hello{Hello: &Hello{}}})
				var b [1]byte
				_, err = s.Read(b[:])
			} else {
				err = serr
			}
		}
		if err == nil {
			t.Fatal("client without a certificate got a working connection")
		}
		select {
		case a := <-acceptCh:
			t.Errorf("server accepted a client without a certificate: %v", a)
		case <-time.After(200 * time.Millisecond):
		}
	})

	t.Run("client with ECDSA certificate", func(t *testing.T) {
		ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		conf := mustClientConfig(t, clientPriv, serverID)
		conf.Certificates = []tls.Certificate{foreignCert(t, ecKey, nil, 0)}
		c, err := dial(t, conf)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = c.AcceptStream(ctx)
		}
		if err == nil {
			t.Fatal("client with an ECDSA certificate got a working connection")
		}
		select {
		case a := <-acceptCh:
			t.Errorf("server accepted a client with an ECDSA certificate: %v", a)
		case <-time.After(200 * time.Millisecond):
		}
	})
}
