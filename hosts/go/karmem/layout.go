package karmem

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Errorf is a malformed-message error at byte offset `at`.
func Errorf(at uint32, format string, args ...any) error { return errAt(at, format, args...) }

// Caller calls an exported function by `interface.function` name with an
// argument message and returns the result message (host.Instance is one).
type Caller interface {
	Call(ctx context.Context, name string, args []byte) ([]byte, error)
}

// Handler serves an imported function: argument message in, result message out.
type Handler func(ctx context.Context, args []byte) ([]byte, error)

// Layout is every type of a schema laid out (FORMAT.md), as karmem-bridge
// computes it: the JSON of `karmem_format::gen_ts::layout_json` (what the
// host kit ships as NAME.layout.json and `gen go` embeds). Types are
// addressed by id (index into Types).
type Layout struct {
	Types     []Type
	Names     map[string]int
	Functions []Function
}

// Type is one type: its inline size and alignment, and what it is (Kind:
// prim handle enum flags struct union array string fixed option result).
type Type struct {
	Kind  string
	Size  uint32
	Align uint32

	Prim   string   // prim: u8 .. f64, bool, char
	Name   string   // enum, flags, struct, union; handle: the resource
	Borrow bool     // handle
	Width  uint32   // enum
	Cases  []Case   // enum (Name, Value), union (Name, Tag, Type)
	Flags  []string // flags

	Dynamic       bool // struct, union
	MapEntry      bool // struct
	Used          uint32
	BodySize      uint32
	Fields        []Field
	Columns       []Column // struct, union: SoA columns
	TagWidth      uint32
	PayloadOffset uint32 // union, option, result
	PayloadSize   uint32

	Elem  int    // array, fixed
	Form  string // array: plain soa bovoa bovos
	UTF16 bool   // string
	Len   uint32 // fixed
	Some  int    // option
	Ok    *int   // result (nil: no payload)
	Err   *int
}

// Case is an enum case (Name, Value) or a union case (Name, Tag, Type; nil Type: no payload).
type Case struct {
	Name  string
	Value uint64
	Tag   uint64
	Type  *int
}

// Field is a struct field at Offset (in the inline bytes or the body).
// Default is its declared default as JSON (nil: none), read by the field's type.
type Field struct {
	Name    string
	Type    int
	Offset  uint32
	Default any
}

// Column is one SoA column (FORMAT.md §6.3): Leaf is the leaf's type id,
// -1 for a union's tag column, -2 for its payload column.
type Column struct {
	Path   []uint32
	Hash   uint32
	Offset uint32
	Size   uint32
	Leaf   int
}

// Function is an interface function: its argument and result structs and
// its type hash (FORMAT.md §10, §11; 0 when unknown).
type Function struct {
	Interface string
	Name      string
	Params    int
	Results   int
	Hash      uint64
}

type jsonLayout struct {
	Types []struct {
		K        string            `json:"k"`
		Size     uint32            `json:"size"`
		Align    uint32            `json:"align"`
		P        string            `json:"p"`
		Name     string            `json:"name"`
		Resource string            `json:"resource"`
		Borrow   bool              `json:"borrow"`
		Width    uint32            `json:"width"`
		Cases    []json.RawMessage `json:"cases"`
		Flags    []string          `json:"flags"`
		Dynamic  bool              `json:"dynamic"`
		MapEntry bool              `json:"map_entry"`
		Used     uint32            `json:"used"`
		BodySize uint32            `json:"body_size"`
		Fields   []struct {
			Name    string `json:"name"`
			Ty      int    `json:"ty"`
			Offset  uint32 `json:"offset"`
			Default any    `json:"default"`
		} `json:"fields"`
		Columns []struct {
			Path   []uint32 `json:"path"`
			Hash   uint32   `json:"hash"`
			Offset uint32   `json:"offset"`
			Size   uint32   `json:"size"`
			Leaf   any      `json:"leaf"`
		} `json:"columns"`
		TagWidth      uint32 `json:"tag_width"`
		PayloadOffset uint32 `json:"payload_offset"`
		PayloadSize   uint32 `json:"payload_size"`
		Elem          int    `json:"elem"`
		Form          string `json:"form"`
		UTF16         bool   `json:"utf16"`
		Len           uint32 `json:"len"`
		Some          int    `json:"some"`
		Ok            *int   `json:"ok"`
		Err           *int   `json:"err"`
	} `json:"types"`
	Named     map[string]int `json:"named"`
	Functions map[string]struct {
		Params  int `json:"params"`
		Results int `json:"results"`
	} `json:"functions"`
}

// ParseLayout reads the JSON form of a layout.
func ParseLayout(text string) (*Layout, error) {
	var j jsonLayout
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("karmem: bad layout: %w", err)
	}
	l := &Layout{Names: j.Named}
	n := len(j.Types)
	bad := func(id int) bool { return id < 0 || id >= n }
	for i, jt := range j.Types {
		t := Type{Kind: jt.K, Size: jt.Size, Align: jt.Align, Prim: jt.P, Name: jt.Name, Borrow: jt.Borrow, Width: jt.Width,
			Flags: jt.Flags, Dynamic: jt.Dynamic, MapEntry: jt.MapEntry, Used: jt.Used, BodySize: jt.BodySize,
			TagWidth: jt.TagWidth, PayloadOffset: jt.PayloadOffset, PayloadSize: jt.PayloadSize, Elem: jt.Elem,
			Form: jt.Form, UTF16: jt.UTF16, Len: jt.Len, Some: jt.Some, Ok: jt.Ok, Err: jt.Err}
		if t.Kind == "handle" {
			t.Name = jt.Resource
		}
		refs := []int{}
		for _, raw := range jt.Cases {
			var c Case
			if t.Kind == "enum" {
				var pair [2]any
				if err := json.Unmarshal(raw, &pair); err != nil {
					return nil, fmt.Errorf("karmem: bad layout: enum case of type %d: %w", i, err)
				}
				name, _ := pair[0].(string)
				value, _ := pair[1].(float64)
				c = Case{Name: name, Value: uint64(value)}
			} else {
				var u struct {
					Name string `json:"name"`
					Tag  uint64 `json:"tag"`
					Ty   *int   `json:"ty"`
				}
				if err := json.Unmarshal(raw, &u); err != nil {
					return nil, fmt.Errorf("karmem: bad layout: union case of type %d: %w", i, err)
				}
				c = Case{Name: u.Name, Tag: u.Tag, Type: u.Ty}
				if u.Ty != nil {
					refs = append(refs, *u.Ty)
				}
			}
			t.Cases = append(t.Cases, c)
		}
		for _, f := range jt.Fields {
			t.Fields = append(t.Fields, Field{Name: f.Name, Type: f.Ty, Offset: f.Offset, Default: f.Default})
			refs = append(refs, f.Ty)
		}
		for _, c := range jt.Columns {
			leaf := -1
			switch x := c.Leaf.(type) {
			case json.Number:
				v, _ := x.Int64()
				leaf = int(v)
				refs = append(refs, leaf)
			case string:
				if x == "payload" {
					leaf = -2
				}
			}
			t.Columns = append(t.Columns, Column{Path: c.Path, Hash: c.Hash, Offset: c.Offset, Size: c.Size, Leaf: leaf})
		}
		switch t.Kind {
		case "array", "fixed":
			refs = append(refs, t.Elem)
		case "option":
			refs = append(refs, t.Some)
		case "result":
			for _, p := range []*int{t.Ok, t.Err} {
				if p != nil {
					refs = append(refs, *p)
				}
			}
		}
		for _, id := range refs {
			if bad(id) {
				return nil, fmt.Errorf("karmem: bad layout: type %d refers to type %d of %d", i, id, n)
			}
		}
		l.Types = append(l.Types, t)
	}
	for path, f := range j.Functions {
		iface, name, _ := strings.Cut(path, ".")
		if bad(f.Params) || bad(f.Results) {
			return nil, fmt.Errorf("karmem: bad layout: function %s", path)
		}
		l.Functions = append(l.Functions, Function{Interface: iface, Name: name, Params: f.Params, Results: f.Results})
	}
	sort.Slice(l.Functions, func(a, b int) bool {
		return l.Functions[a].Interface+"."+l.Functions[a].Name < l.Functions[b].Interface+"."+l.Functions[b].Name
	})
	return l, nil
}

// MustParseLayout is ParseLayout for generated code, whose layout is known good.
func MustParseLayout(text string) *Layout {
	l, err := ParseLayout(text)
	if err != nil {
		panic(err)
	}
	return l
}

// WithHashes sets the functions' type hashes (by `interface.function`).
func (l *Layout) WithHashes(hashes map[string]uint64) *Layout {
	for i, f := range l.Functions {
		l.Functions[i].Hash = hashes[f.Interface+"."+f.Name]
	}
	return l
}

// Function finds `interface.function` (or a world-level `function`).
func (l *Layout) Function(iface, name string) (Function, bool) {
	for _, f := range l.Functions {
		if f.Interface == iface && f.Name == name {
			return f, true
		}
	}
	return Function{}, false
}

// Named is the id of named type `name`.
func (l *Layout) Named(name string) (int, bool) {
	id, ok := l.Names[name]
	return id, ok
}

func (l *Layout) ty(id int) *Type { return &l.Types[id] }

func optID(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}
