package wire

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

func sampleFrames(t testing.TB) map[string]*Frame {
	t.Helper()
	_, priv := newKey(t)
	sa, err := SignAnnouncement(priv, &Announcement{
		Origin:      NodeIDFromKey(priv.Public().(ed25519.PublicKey)).String(),
		Seq:         3,
		TimestampMs: 1_700_000_000_000,
		Body:        &Announcement_Node{Node: &NodeAnnouncement{Alias: "a", Addresses: []string{"127.0.0.1:9000"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*Frame{
		"hello": {Body: &Frame_Hello{Hello: &Hello{
			Protocol: ProtocolVersion, Did: didKeyVectors[0].did, Alias: "alice",
			Version: "menode/test", ListenAddrs: []string{"127.0.0.1:9000", "[::1]:9000"}, Features: []string{"x"},
		}}},
		"empty hello":  {Body: &Frame_Hello{Hello: &Hello{}}},
		"gossip":       {Body: &Frame_Gossip{Gossip: &Gossip{Announcement: sa, Ttl: 16}}},
		"error":        {Body: &Frame_Error{Error: &Error{Code: ErrorCode_ERROR_DUPLICATE_CONNECTION, Message: "crossed dial"}}},
		"unknown code": {Body: &Frame_Error{Error: &Error{Code: ErrorCode(99)}}},
	}
}

func encodeFrame(t testing.TB, f *Frame) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteFrame(&buf, f); err != nil {
		t.Fatalf("WriteFrame: %v", err)
	}
	return buf.Bytes()
}

func readAll(b []byte) (*Frame, error) { return ReadFrame(bufio.NewReader(bytes.NewReader(b))) }

// countingWriter records how many Write calls a frame took.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

func TestFrame_roundTrip(t *testing.T) {
	for name, f := range sampleFrames(t) {
		t.Run(name, func(t *testing.T) {
			var w countingWriter
			if err := WriteFrame(&w, f); err != nil {
				t.Fatalf("WriteFrame: %v", err)
			}
			if w.writes != 1 {
				t.Errorf("WriteFrame made %d Write calls, want 1", w.writes)
			}
			n, k := binary.Uvarint(w.Bytes())
			if k <= 0 || int(n) != w.Len()-k {
				t.Errorf("length prefix %d (%d bytes) does not match body of %d bytes", n, k, w.Len()-k)
			}
			r := bufio.NewReader(&w.Buffer)
			got, err := ReadFrame(r)
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if !proto.Equal(got, f) {
				t.Errorf("round trip: got %v, want %v", got, f)
			}
			if _, err := ReadFrame(r); err != io.EOF {
				t.Errorf("second ReadFrame = %v, want io.EOF", err)
			}
		})
	}
}

func TestReadFrame_stream(t *testing.T) {
	frames := sampleFrames(t)
	var buf bytes.Buffer
	order := []string{"hello", "gossip", "error", "hello"}
	for _, name := range order {
		if err := WriteFrame(&buf, frames[name]); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for i, name := range order {
		t.Run(name, func(t *testing.T) {
			got, err := ReadFrame(r)
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !proto.Equal(got, frames[name]) {
				t.Errorf("frame %d: got %v, want %v", i, got, frames[name])
			}
		})
	}
}

// bodyTrap fails the test if anything reads past the length prefix.
type bodyTrap struct {
	t      *testing.T
	prefix []byte
}

func (b *bodyTrap) Read(p []byte) (int, error) {
	if len(b.prefix) == 0 {
		b.t.Error("ReadFrame read past an oversized length prefix")
		return 0, io.EOF
	}
	n := copy(p, b.prefix)
	b.prefix = b.prefix[n:]
	return n, nil
}

func TestReadFrame_oversized(t *testing.T) {
	cases := []struct {
		name   string
		length uint64
	}{
		{"one over", MaxFrameSize + 1},
		{"4 GiB", 1 << 32},
		{"max uint64", ^uint64(0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := binary.AppendUvarint(nil, tc.length)
			// A reader smaller than bufio's default so the body is never buffered.
			r := bufio.NewReaderSize(&bodyTrap{t: t, prefix: prefix}, 16)
			f, err := ReadFrame(r)
			if !errors.Is(err, ErrFrameTooLarge) || f != nil {
				t.Errorf("ReadFrame = %v, %v; want ErrFrameTooLarge", f, err)
			}
		})
	}
	t.Run("allocation", func(t *testing.T) {
		in := binary.AppendUvarint(nil, 1<<40)
		allocs := testing.AllocsPerRun(10, func() {
			ReadFrame(bufio.NewReaderSize(bytes.NewReader(in), 16))
		})
		// bufio reader, bytes reader, error values: a handful of small allocations, never the body.
		if allocs > 10 {
			t.Errorf("ReadFrame allocated %v times for an oversized frame", allocs)
		}
	})
	t.Run("overlong varint", func(t *testing.T) {
		in := bytes.Repeat([]byte{0xff}, 11)
		if _, err := readAll(in); !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("ReadFrame(11 x 0xff) error = %v, want ErrFrameTooLarge", err)
		}
	})
	t.Run("exactly max accepted", func(t *testing.T) {
		// A Hello whose encoding is exactly MaxFrameSize bytes.
		f := &Frame{Body: &Frame_Hello{Hello: &Hello{Alias: ""}}}
		pad := MaxFrameSize - proto.Size(f)
		f.GetHello().Alias = strings.Repeat("a", pad)
		for proto.Size(f) > MaxFrameSize {
			f.GetHello().Alias = f.GetHello().Alias[1:]
		}
		if proto.Size(f) != MaxFrameSize {
			t.Fatalf("cannot build a frame of exactly %d bytes (got %d)", MaxFrameSize, proto.Size(f))
		}
		got, err := readAll(encodeFrame(t, f))
		if err != nil || !proto.Equal(got, f) {
			t.Errorf("frame of exactly MaxFrameSize: %v", err)
		}
	})
}

func TestWriteFrame_refuses(t *testing.T) {
	cases := []struct {
		name string
		f    *Frame
		want error
	}{
		{"oversized", &Frame{Body: &Frame_Hello{Hello: &Hello{Alias: strings.Repeat("x", MaxFrameSize)}}}, ErrFrameTooLarge},
		{"no body", &Frame{}, ErrBadFrame},
		{"nil frame", nil, ErrBadFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var w countingWriter
			err := WriteFrame(&w, tc.f)
			if !errors.Is(err, tc.want) {
				t.Errorf("WriteFrame error = %v, want %v", err, tc.want)
			}
			if w.writes != 0 {
				t.Errorf("WriteFrame wrote %d times after refusing", w.writes)
			}
		})
	}
}

func TestReadFrame_truncated(t *testing.T) {
	valid := encodeFrame(t, sampleFrames(t)["hello"])
	big := encodeFrame(t, &Frame{Body: &Frame_Hello{Hello: &Hello{Alias: strings.Repeat("y", 300)}}})
	if big[0] < 0x80 {
		t.Fatal("test frame should have a multi-byte length prefix")
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty input", nil, io.EOF},
		{"inside length", big[:1], io.ErrUnexpectedEOF},
		{"length only", valid[:1], io.ErrUnexpectedEOF},
		{"inside body", valid[:len(valid)-1], io.ErrUnexpectedEOF},
		{"half body", big[:len(big)/2], io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := readAll(tc.in)
			if err != tc.want || f != nil {
				t.Errorf("ReadFrame = %v, %v; want %v", f, err, tc.want)
			}
		})
	}
}

func TestReadFrame_malformed(t *testing.T) {
	withLen := func(body []byte) []byte { return append(binary.AppendUvarint(nil, uint64(len(body))), body...) }
	cases := []struct {
		name string
		in   []byte
	}{
		{"zero length", []byte{0}},
		{"zero body frame", withLen(mustMarshal(t, &Frame{}))},
		{"unknown field only", withLen([]byte{0x78, 0x01})}, // field 15 varint 1: no body
		{"garbage", withLen([]byte{0xff, 0xff, 0xff, 0xff})},
		{"truncated submessage", withLen([]byte{0x0a, 0x05, 0x08})},
		{"wrong wire type", withLen([]byte{0x08, 0x01})}, // field 1 as varint, but it is a message
		{"invalid utf8 in did", withLen([]byte{0x0a, 0x03, 0x12, 0x01, 0xff})},
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := readAll(tc.in)
			if err == nil {
				t.Fatalf("ReadFrame(%x) = %v, want an error", tc.in, f)
			}
			if !errors.Is(err, ErrBadFrame) && err != io.ErrUnexpectedEOF {
				t.Errorf("ReadFrame(%x) error = %v, want ErrBadFrame or io.ErrUnexpectedEOF", tc.in, err)
			}
		})
	}
	t.Run("zero body is ErrBadFrame", func(t *testing.T) {
		if _, err := readAll([]byte{0}); !errors.Is(err, ErrBadFrame) {
			t.Errorf("error = %v, want ErrBadFrame", err)
		}
	})
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzReadFrame(f *testing.F) {
	for _, fr := range sampleFrames(f) {
		b := encodeFrame(f, fr)
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(b[:1])
		f.Add(append(bytes.Clone(b), b...))
	}
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add(binary.AppendUvarint(nil, MaxFrameSize+1))
	f.Add(append(binary.AppendUvarint(nil, MaxFrameSize+1), make([]byte, 64)...))
	f.Add(bytes.Repeat([]byte{0xff}, 11))
	f.Add([]byte{0x04, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))

	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := readAll(in)
		if err != nil {
			if fr != nil {
				t.Fatalf("ReadFrame returned a frame with error %v", err)
			}
			return
		}
		if n, k := binary.Uvarint(in); k <= 0 || n > MaxFrameSize {
			t.Fatalf("ReadFrame accepted a frame with declared length %d (prefix %d bytes)", n, k)
		}
		if fr.GetBody() == nil {
			t.Fatal("ReadFrame returned a frame with no body")
		}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, fr); err != nil {
			t.Fatalf("re-encode of a decoded frame: %v", err)
		}
		again, err := ReadFrame(bufio.NewReader(&buf))
		if err != nil {
			t.Fatalf("decode of re-encoded frame: %v", err)
		}
		if !proto.Equal(fr, again) {
			t.Fatalf("re-encoded frame differs: %v vs %v", fr, again)
		}
	})
}
