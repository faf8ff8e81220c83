package karmem

import (
	"encoding/binary"
	"errors"
	"math"
	"unicode/utf16"
)

// ErrTooLarge: the message would exceed 4 GiB - 1 bytes.
var ErrTooLarge = errors.New("message would exceed 4 GiB - 1 bytes")

// Builder writes a message top down (paper Figure 34): allocate the root,
// then each child, writing its offset into the parent. Allocations are
// zeroed and never move; offset 0 is the header, never an object.
type Builder struct{ buf []byte }

// NewBuilder starts a message with its header.
func NewBuilder() *Builder {
	b := &Builder{buf: make([]byte, HeaderSize, 256)}
	binary.LittleEndian.PutUint32(b.buf, HeaderWord)
	return b
}

// Reset starts a new message in the same buffer.
func (b *Builder) Reset() {
	b.buf = b.buf[:HeaderSize]
	clear(b.buf)
	binary.LittleEndian.PutUint32(b.buf, HeaderWord)
}

// Bytes is the message so far (aliases the builder's buffer).
func (b *Builder) Bytes() []byte { return b.buf }

// Len is the message length so far.
func (b *Builder) Len() uint32 { return uint32(len(b.buf)) }

// Alloc allocates `size` zeroed bytes aligned to `align`; 0 bytes: offset 0.
func (b *Builder) Alloc(size uint64, align uint32) (uint32, error) {
	if size == 0 {
		return 0, nil
	}
	start := (uint64(len(b.buf)) + uint64(align) - 1) &^ (uint64(align) - 1)
	end := start + size
	if end > math.MaxUint32 {
		return 0, ErrTooLarge
	}
	if end <= uint64(cap(b.buf)) {
		old := len(b.buf)
		b.buf = b.buf[:end]
		clear(b.buf[old:])
	} else {
		grown := make([]byte, end, max(end, 2*uint64(cap(b.buf))))
		copy(grown, b.buf)
		b.buf = grown
	}
	return uint32(start), nil
}

// AllocObject allocates an object (8-aligned).
func (b *Builder) AllocObject(size uint64) (uint32, error) { return b.Alloc(size, ObjectAlign) }

// AllocBlock allocates an array block (64-aligned, rounded up to 64 bytes).
func (b *Builder) AllocBlock(size uint64) (uint32, error) {
	return b.Alloc((size+BlockAlign-1)&^(BlockAlign-1), BlockAlign)
}

// AllocDynamicStruct allocates a dynamic struct body using `used` bytes and writes its header.
func (b *Builder) AllocDynamicStruct(used uint32) (uint32, error) {
	used = max(used, 4)
	size := (used + 7) &^ 7
	at, err := b.AllocObject(uint64(size))
	if err != nil {
		return 0, err
	}
	b.PutU32(at, (size/8)<<3|(size-used))
	return at, nil
}

// SetRoot writes the root offset.
func (b *Builder) SetRoot(at uint32) { b.PutU32(4, at) }

// PutSlot writes an array slot.
func (b *Builder) PutSlot(at uint32, s Slot) {
	b.PutU32(at, s.Offset)
	b.PutU32(at+4, s.Length)
	b.PutU32(at+8, s.Capacity)
}

// AllocPlainArray allocates a plain block for `length` elements (room for
// `capacity`), writes the slot at `at` and returns the block.
func (b *Builder) AllocPlainArray(at, elemSize, length, capacity uint32) (uint32, error) {
	capacity = max(capacity, length)
	block, err := b.AllocBlock(uint64(capacity) * uint64(elemSize))
	if err != nil {
		return 0, err
	}
	b.PutSlot(at, Slot{block, length, capacity})
	return block, nil
}

// AllocSoaArray allocates an SoA directory and its columns (hashes[j],
// element sizes sizes[j]) and writes the slot at `at`; it returns the column offsets.
func (b *Builder) AllocSoaArray(at, length, capacity uint32, hashes, sizes []uint32) ([]uint32, error) {
	capacity = max(capacity, length)
	cols := make([]uint32, len(hashes))
	if capacity == 0 {
		b.PutSlot(at, Slot{})
		return cols, nil
	}
	n := uint32(len(hashes))
	dir, err := b.AllocBlock(4 + 8*uint64(n))
	if err != nil {
		return nil, err
	}
	b.PutU32(dir, n)
	for j := range hashes {
		col, err := b.AllocBlock(uint64(capacity) * uint64(sizes[j]))
		if err != nil {
			return nil, err
		}
		b.PutU32(dir+4+4*uint32(j), hashes[j])
		b.PutU32(dir+4+4*n+4*uint32(j), col)
		cols[j] = col
	}
	b.PutSlot(at, Slot{dir, length, capacity})
	return cols, nil
}

func (b *Builder) PutU8(at uint32, v uint8)   { b.buf[at] = v }
func (b *Builder) PutU16(at uint32, v uint16) { binary.LittleEndian.PutUint16(b.buf[at:], v) }
func (b *Builder) PutU32(at uint32, v uint32) { binary.LittleEndian.PutUint32(b.buf[at:], v) }
func (b *Builder) PutU64(at uint32, v uint64) { binary.LittleEndian.PutUint64(b.buf[at:], v) }
func (b *Builder) PutI8(at uint32, v int8)    { b.PutU8(at, uint8(v)) }
func (b *Builder) PutI16(at uint32, v int16)  { b.PutU16(at, uint16(v)) }
func (b *Builder) PutI32(at uint32, v int32)  { b.PutU32(at, uint32(v)) }
func (b *Builder) PutI64(at uint32, v int64)  { b.PutU64(at, uint64(v)) }
func (b *Builder) PutF32(at uint32, v float32) {
	b.PutU32(at, math.Float32bits(v))
}
func (b *Builder) PutF64(at uint32, v float64) {
	b.PutU64(at, math.Float64bits(v))
}
func (b *Builder) PutBool(at uint32, v bool) {
	if v {
		b.buf[at] = 1
	} else {
		b.buf[at] = 0
	}
}

// PutChar writes a char; it must be a Unicode scalar value.
func (b *Builder) PutChar(at uint32, v rune) error {
	if v < 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) {
		return errAt(at, "invalid char %#x", v)
	}
	b.PutU32(at, uint32(v))
	return nil
}

// PutUint writes an unsigned integer of 1, 2, 4 or 8 bytes.
func (b *Builder) PutUint(at uint32, width uint32, v uint64) {
	switch width {
	case 1:
		b.PutU8(at, uint8(v))
	case 2:
		b.PutU16(at, uint16(v))
	case 4:
		b.PutU32(at, uint32(v))
	default:
		b.PutU64(at, v)
	}
}

// PutString8 writes `s` as a `[]u8 #string` with its slot at `at`.
func (b *Builder) PutString8(at uint32, s string) error {
	if uint64(len(s)) > math.MaxUint32 {
		return ErrTooLarge
	}
	block, err := b.AllocPlainArray(at, 1, uint32(len(s)), uint32(len(s)))
	if err != nil {
		return err
	}
	copy(b.buf[block:], s)
	return nil
}

// PutString16 writes `s` as a `[]u16 #string` (UTF-16LE) with its slot at `at`.
func (b *Builder) PutString16(at uint32, s string) error {
	units := utf16.Encode([]rune(s))
	block, err := b.AllocPlainArray(at, 2, uint32(len(units)), uint32(len(units)))
	if err != nil {
		return err
	}
	for i, u := range units {
		b.PutU16(block+2*uint32(i), u)
	}
	return nil
}
