package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// MaxFrameSize is the largest encoded Frame a peer may send (the length
// prefix not included). A larger declared length is a protocol error.
const MaxFrameSize = 1 << 20

var (
	// ErrFrameTooLarge is returned for a frame over MaxFrameSize, on either side.
	ErrFrameTooLarge = errors.New("frame larger than 1 MiB")
	// ErrBadFrame is wrapped by ReadFrame when the bytes are not a valid Frame.
	ErrBadFrame = errors.New("malformed frame")
)

// WriteFrame writes f as uvarint(length) ‖ encoded Frame in a single Write
// call, so that concurrent writers on a stream that serialises Writes never
// interleave frames. It refuses frames over MaxFrameSize with ErrFrameTooLarge.
func WriteFrame(w io.Writer, f *Frame) error {
	if f.GetBody() == nil {
		return fmt.Errorf("write frame: no body set: %w", ErrBadFrame)
	}
	size := proto.Size(f)
	if size > MaxFrameSize {
		return fmt.Errorf("write frame of %d bytes: %w", size, ErrFrameTooLarge)
	}
	buf := make([]byte, 0, binary.MaxVarintLen64+size)
	buf = binary.AppendUvarint(buf, uint64(size))
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, f)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// ReadFrame reads one frame. The declared length is checked against
// MaxFrameSize before anything is allocated for the body. It returns io.EOF
// when r ends cleanly before the first byte of a frame, io.ErrUnexpectedEOF
// when it ends inside one, an error wrapping ErrFrameTooLarge for an
// oversized length, and an error wrapping ErrBadFrame for bytes that are not
// a Frame or a Frame with no body.
func ReadFrame(r *bufio.Reader) (*Frame, error) {
	n, err := readLength(r)
	if err != nil {
		return nil, err
	}
	if n > MaxFrameSize {
		return nil, fmt.Errorf("read frame: declared length %d: %w", n, ErrFrameTooLarge)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	f := new(Frame)
	if err := proto.Unmarshal(buf, f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if f.GetBody() == nil {
		return nil, fmt.Errorf("%w: no body set", ErrBadFrame)
	}
	return f, nil
}

// readLength reads the uvarint length prefix. Unlike binary.ReadUvarint it
// reports an overlong varint as ErrFrameTooLarge (it cannot be a valid
// length) and an end of input after the first byte as io.ErrUnexpectedEOF.
func readLength(r *bufio.Reader) (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				break
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, fmt.Errorf("read frame: length prefix overflows 64 bits: %w", ErrFrameTooLarge)
}
