package karmem_test

import (
	"bytes"
	"encoding/hex"
	"math/rand"
	"strings"
	"testing"

	"karmem-bridge/hosts/go/examples/temperature"
	"karmem-bridge/hosts/go/karmem"
)

// FORMAT.md §6.3's TemperatureBatch golden message (two readings): the
// benchmark guest's `analyze` parameters have the same layout.
const golden = `
00: 0c000000 08000000
08: 10000000 40000000 02000000 02000000
40: 02000000 15f5954b 04b669fb 80000000 c0000000
80: 00f15365 00000000 3cf15365 00000000
c0: 0000ac41 0000b041`

func goldenBytes(t *testing.T) []byte {
	out := make([]byte, 256)
	for _, line := range strings.Split(strings.TrimSpace(golden), "\n") {
		at, words, _ := strings.Cut(line, ":")
		off, err := hex.DecodeString(strings.Repeat("0", 4-len(at)) + at)
		if err != nil {
			t.Fatal(err)
		}
		b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(words), " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		copy(out[int(off[0])<<8|int(off[1]):], b)
	}
	return out
}

func TestGoldenTemperatureBatch(t *testing.T) {
	want := goldenBytes(t)
	batch := temperature.TemperatureAnalyzeParams{Readings: []temperature.Reading{
		{Timestamp: 1700000000, Value: 21.5}, {Timestamp: 1700000060, Value: 22.0},
	}}
	// value type
	got, err := batch.Encode()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Encode: %x, %v", got, err)
	}
	// builder, top down
	b := karmem.NewBuilder()
	root, err := temperature.NewTemperatureAnalyzeParamsRoot(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.SetReadings(b, batch.Readings); err != nil || !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("builder: %x, %v", b.Bytes(), err)
	}
	// view: the SoA array read lazily, element by element
	view, err := temperature.ViewTemperatureAnalyzeParams(want)
	if err != nil {
		t.Fatal(err)
	}
	readings, err := view.ReadingsArray()
	if err != nil || readings.Len() != 2 {
		t.Fatalf("ReadingsArray: %v", err)
	}
	if r, err := readings.At(1); err != nil || r.Value != 22.0 || r.Timestamp != 1700000060 {
		t.Fatalf("At(1): %+v, %v", r, err)
	}
	// dynamic codec over the layout
	v, err := karmem.DecodeValue(temperature.KarmemLayout, temperature.KarmemLayout.Functions[0].Params, want, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := karmem.EncodeValue(temperature.KarmemLayout, temperature.KarmemLayout.Functions[0].Params, v, nil)
	if err != nil || !bytes.Equal(again, want) {
		t.Fatalf("dynamic: %v -> %x, %v", v, again, err)
	}
	// the empty message: every field absent
	empty, err := temperature.DecodeTemperatureAnalyzeParams(nil)
	if err != nil || len(empty.Readings) != 0 {
		t.Fatalf("empty: %+v, %v", empty, err)
	}
}

// Mutated messages never panic the readers: they decode or return an error.
func TestMutatedMessagesAreErrorsNotPanics(t *testing.T) {
	want := goldenBytes(t)
	rng := rand.New(rand.NewSource(1))
	layout := temperature.KarmemLayout
	for i := 0; i < 20000; i++ {
		m := append([]byte(nil), want...)
		for k := 0; k <= rng.Intn(4); k++ {
			m[rng.Intn(len(m))] ^= byte(1 << rng.Intn(8))
		}
		m = m[:rng.Intn(len(m)+1)]
		temperature.DecodeTemperatureAnalyzeParams(m)
		karmem.DecodeValue(layout, layout.Functions[0].Params, m, nil)
		if v, err := temperature.ViewTemperatureAnalyzeParams(m); err == nil {
			if a, err := v.ReadingsArray(); err == nil {
				a.Slice()
			}
		}
	}
}

// A short message may claim a huge SoA array whose columns it leaves out
// (FORMAT.md §9: they read as zero values): the dynamic decoder refuses to
// materialise more elements than the message's size allows instead of
// building billions of Go values.
func TestHugeArraysOfAbsentColumnsAreRefused(t *testing.T) {
	m := goldenBytes(t)
	// the readings slot's length and capacity (root struct at 0x08: its
	// size, then the slot: offset, length, capacity)
	copy(m[0x10:], []byte{0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f})
	// the SoA directory at 0x40: no columns
	copy(m[0x40:], []byte{0, 0, 0, 0})
	layout := temperature.KarmemLayout
	_, err := karmem.DecodeValue(layout, layout.Functions[0].Params, m, nil)
	if err == nil || !strings.Contains(err.Error(), "decode budget") {
		t.Fatalf("expected the decode budget to refuse the message, got %v", err)
	}
	// the same shape with a believable length decodes
	copy(m[0x10:], []byte{2, 0, 0, 0})
	copy(m[0x14:], []byte{2, 0, 0, 0})
	if _, err := karmem.DecodeValue(layout, layout.Functions[0].Params, m, nil); err != nil {
		t.Fatalf("two readings of absent columns: %v", err)
	}
}
