package actors

import (
	"crypto/rand"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

func signedPunch(t *testing.T, from *fakePeerConn, to wire.NodeID, reply bool, nonce []byte, addrs ...string) *wire.PunchRequest {
	t.Helper()
	if nonce == nil {
		nonce = make([]byte, wire.PunchNonceSize)
		_, _ = rand.Read(nonce)
	}
	r, err := wire.SignPunch(from.key, &wire.PunchBody{From: from.id.String(), To: to.String(), Addrs: addrs,
		TimestampMs: time.Now().UnixMilli(), Nonce: nonce, Reply: reply})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func punchFrame(r *wire.PunchRequest) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_PunchRequest{PunchRequest: r}}
}

func isPunch(fr *wire.Frame) bool { return fr.GetPunchRequest() != nil }

// TestPunch_relayRules: a node passes a punch request between two of its
// peers once, adding where it sees the signer, and only when the signer
// itself sent it.
func TestPunch_relayRules(t *testing.T) {
	r, addr, _ := startNode(t, "relay")
	a := connectFake(t, r, addr, addr)
	b := connectFake(t, r, addr, addr)
	eventually(t, 5*time.Second, "both peers connected", func() bool { return connected(t, r, a.id) && connected(t, r, b.id) })

	// Not relayed: signed by a but sent by b; and one relayed already.
	b.send(t, punchFrame(signedPunch(t, a, b.id, false, nil)))
	relayed := signedPunch(t, a, b.id, false, nil)
	relayed.ObservedAddr = "127.0.0.1:1"
	a.send(t, punchFrame(relayed))
	// Relayed: a's own request for b.
	want := signedPunch(t, a, b.id, false, nil)
	a.send(t, punchFrame(want))
	got := b.next(t, 5*time.Second, "the relayed request", isPunch).GetPunchRequest()
	if string(got.Payload) != string(want.Payload) {
		t.Fatalf("b got another request than a's own (the others must not be relayed)")
	}
	_, port, _ := net.SplitHostPort(a.conn.LocalAddr().String())
	if want := net.JoinHostPort("127.0.0.1", port); got.ObservedAddr != want {
		t.Errorf("observed_addr = %q, want where the relay sees a: %s", got.ObservedAddr, want)
	}
	if st := status(t, r); st.Punches.Relayed != 1 {
		t.Errorf("relayed = %d, want 1", st.Punches.Relayed)
	}
}

// TestPunch_answersAndDials: a node asked (through a relay) to punch to a
// node answers through the relay with its own signed reply, and dials the
// signer at the address the relay saw, from its own QUIC socket; forged
// and replayed requests are refused.
func TestPunch_answersAndDials(t *testing.T) {
	n, addr, _ := startNode(t, "target")
	relay := connectFake(t, n, addr, addr)
	signer := &fakePeerConn{}
	signer.key, signer.id = newKey(t)
	listen, froms, ids := listenAs(t, signer.key)

	req := signedPunch(t, signer, n.ID, false, nil)
	req.ObservedAddr = listen
	forged := signedPunch(t, signer, n.ID, false, nil)
	forged.Signature[0] ^= 1
	forged.ObservedAddr = listen
	relay.send(t, punchFrame(forged))
	relay.send(t, punchFrame(req))
	relay.send(t, punchFrame(req)) // a replay

	reply := relay.next(t, 5*time.Second, "the reply through the relay", isPunch).GetPunchRequest()
	body, from, to, err := wire.OpenPunch(reply, time.Now(), time.Minute)
	if err != nil || from != n.ID || to != signer.id || !body.Reply {
		t.Fatalf("reply %+v from %s to %s (%v), want a reply from %s to %s", body, from, to, err, n.ID, signer.id)
	}
	select {
	case got := <-froms:
		if got != addr {
			t.Errorf("the punch dial came from %s, not the node's QUIC socket %s", got, addr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the node did not dial the signer")
	}
	select {
	case id := <-ids:
		if id != n.ID {
			t.Errorf("the punch dial presented %s, want %s", id, n.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the punch dial presented no certificate")
	}
	eventually(t, 5*time.Second, "forged and replayed requests refused", func() bool {
		st := status(t, n).Punches
		return st.Answered == 1 && st.Refused == 2
	})
}

// TestPunch_noAmplification: a punch request that names addresses of
// another host (not where the relay sees its signer) has the node dial
// only the signer's observed address: the other host gets no packet,
// well under QUIC's 3x-what-the-requester-sent rule.
func TestPunch_noAmplification(t *testing.T) {
	n, addr, _ := startNode(t, "target")
	relay := connectFake(t, n, addr, addr)
	signer := &fakePeerConn{}
	signer.key, signer.id = newKey(t)
	listen, froms, ids := listenAs(t, signer.key)

	victim, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Close() })
	var got atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			k, _, err := victim.ReadFromUDP(buf)
			if err != nil {
				return
			}
			got.Add(int64(k))
		}
	}()

	req := signedPunch(t, signer, n.ID, false, nil, victim.LocalAddr().String(), "127.0.0.3:9")
	req.ObservedAddr = listen
	fr := punchFrame(req)
	sent := proto.Size(fr)
	relay.send(t, fr)
	select {
	case from := <-froms:
		if from != addr {
			t.Errorf("the punch dial came from %s, want %s", from, addr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the node did not dial the signer's observed address")
	}
	// The dials to every address of a request start together: by the
	// time the one to the signer has sent its certificate, a round trip
	// later, one to the victim would have sent its first Initial.
	select {
	case <-ids:
	case <-time.After(5 * time.Second):
		t.Fatal("the punch dial presented no certificate")
	}
	if a := status(t, n).Punches.Answered; a != 1 {
		t.Errorf("answered %d punch requests, want 1", a)
	}
	// 3x would be QUIC's bound; the node sends nothing there at all.
	if b := got.Load(); b > 0 {
		t.Errorf("the address named in the request got %d bytes (3x what the requester sent is %d)", b, 3*sent)
	}
}

// TestPunch_answersBesideOwnAttempts: a node running its limit of
// attempts of its own still answers another's request (they used to share
// one limit, so a node trying to reach others could not be reached), and
// answers no more than maxPunchAnswers at once.
func TestPunch_answersBesideOwnAttempts(t *testing.T) {
	p := newPuncher(Config{}, nil, wire.NodeID{}, nil, nil)
	for i := range maxPunchActive {
		p.attempts[wire.NodeID{byte(i + 1)}] = &punchAttempt{ours: true, active: true}
	}
	if p.active(true) != maxPunchActive {
		t.Fatalf("active(ours) = %d, want %d", p.active(true), maxPunchActive)
	}
	if !p.mayAnswer(&punchAttempt{}) {
		t.Errorf("with %d attempts of its own under way, the node refuses to answer another's request", maxPunchActive)
	}
	if !p.mayAnswer(p.attempts[wire.NodeID{1}]) {
		t.Errorf("a request from a node we are punching to ourselves is refused; both began at once and both should dial")
	}
	for i := range maxPunchAnswers {
		p.attempts[wire.NodeID{byte(100 + i)}] = &punchAttempt{active: true}
	}
	if p.mayAnswer(&punchAttempt{}) {
		t.Errorf("answered a request beyond %d answers at once", maxPunchAnswers)
	}
	if p.mayAnswer(p.attempts[wire.NodeID{100}]) {
		t.Errorf("answered a request we answer already")
	}
}
