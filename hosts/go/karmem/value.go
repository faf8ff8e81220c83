package karmem

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The dynamic codec: messages to and from JSON-like Go values, driven by a
// Layout. The mapping (docs/RUNTIME.md, "Go host"):
//
//	bool                      bool
//	u8..u32, i8..i32          a number (json.Number, float64 or any Go integer)
//	u64, i64                  a decimal string ("-42"); numbers are accepted too
//	f32, f64                  a number, or "nan", "inf", "-inf"
//	char                      a one-character string
//	strings                   string
//	[]T, [N]T                 []any
//	struct                    map[string]any by IDL field name; a tuple-shaped
//	                          struct (fields _0, _1, ...) as []any
//	enum                      the case name
//	flags                     []any of the set flag names, in declaration order
//	union                     map[string]any{"case": payload or nil}
//	option                    nil, or map[string]any{"some": v}
//	result                    map[string]any{"ok": v or nil} or {"err": v or nil}
//	map<K, V>                 []any of []any{k, v} pairs, in entry order
//	handles                   a number, or what Handles.In/Out make of it
//
// Decoding produces exactly these forms (numbers as json.Number).

// Handles converts resource handles between the wire (u32) and JSON values.
// A nil Handles (or nil func) maps them to numbers.
type Handles struct {
	// In turns a JSON value into a handle (encoding).
	In func(v any, resource string, borrow bool) (uint32, error)
	// Out turns a handle into a JSON value (decoding).
	Out func(h uint32, resource string, borrow bool) any
}

// EncodeValue writes a message whose root is `v` of type `ty`.
func EncodeValue(l *Layout, ty int, v any, h *Handles) ([]byte, error) {
	e := &encoder{l: l, b: NewBuilder(), h: h}
	root, err := e.outOfLine(ty, v, "")
	if err != nil {
		return nil, err
	}
	e.b.SetRoot(root)
	return e.b.Bytes(), nil
}

// DecodeValue reads a message whose root is of type `ty`.
func DecodeValue(l *Layout, ty int, msg []byte, h *Handles) (any, error) {
	m, err := NewMessage(msg)
	if err != nil {
		return nil, err
	}
	d := &decoder{l: l, m: m, h: h, budget: decodeBudget(len(msg))}
	return d.outOfLine(ty, m.Root())
}

// EncodeArgs writes the argument message of `iface.fn` from positional
// arguments (FORMAT.md §10); no parameters: the empty message.
func EncodeArgs(l *Layout, iface, fn string, args []any, h *Handles) ([]byte, error) {
	f, ok := l.Function(iface, fn)
	if !ok {
		return nil, fmt.Errorf("karmem: no function `%s.%s` in the layout", iface, fn)
	}
	params := l.ty(f.Params)
	if len(args) != len(params.Fields) {
		return nil, fmt.Errorf("karmem: `%s.%s` takes %d arguments, got %d", iface, fn, len(params.Fields), len(args))
	}
	if len(args) == 0 {
		return nil, nil
	}
	rec := map[string]any{}
	for i, f := range params.Fields {
		rec[f.Name] = args[i]
	}
	return EncodeValue(l, f.Params, rec, h)
}

// DecodeResults reads the result message of `iface.fn` as positional values.
func DecodeResults(l *Layout, iface, fn string, msg []byte, h *Handles) ([]any, error) {
	f, ok := l.Function(iface, fn)
	if !ok {
		return nil, fmt.Errorf("karmem: no function `%s.%s` in the layout", iface, fn)
	}
	v, err := DecodeValue(l, f.Results, msg, h)
	if err != nil {
		return nil, err
	}
	rec, _ := v.(map[string]any)
	out := []any{}
	for _, field := range l.ty(f.Results).Fields {
		out = append(out, rec[field.Name])
	}
	return out, nil
}

func isTuple(t *Type) bool {
	if len(t.Fields) == 0 {
		return false
	}
	for i, f := range t.Fields {
		if f.Name != "_"+strconv.Itoa(i) {
			return false
		}
	}
	return true
}

type encoder struct {
	l *Layout
	b *Builder
	h *Handles
}

func (e *encoder) fail(path, format string, args ...any) error {
	if path == "" {
		path = "value"
	}
	return fmt.Errorf("karmem: %s: %s", path, fmt.Sprintf(format, args...))
}

func (e *encoder) outOfLine(ty int, v any, path string) (uint32, error) {
	t := e.l.ty(ty)
	if t.Kind == "struct" && t.Dynamic {
		return e.dynamicStruct(t, v, path)
	}
	if t.Size == 0 {
		scratch := &encoder{l: e.l, b: NewBuilder(), h: e.h}
		at, _ := scratch.b.AllocObject(8)
		return 0, scratch.inline(ty, at, v, path)
	}
	at, err := e.b.AllocObject(uint64(t.Size))
	if err != nil {
		return 0, err
	}
	return at, e.inline(ty, at, v, path)
}

func (e *encoder) dynamicStruct(t *Type, v any, path string) (uint32, error) {
	at, err := e.b.AllocDynamicStruct(t.Used)
	if err != nil {
		return 0, err
	}
	return at, e.fields(t, at, v, path)
}

// fieldValues are a struct value's fields in declaration order.
func (e *encoder) fieldValues(t *Type, v any, path string) ([]any, error) {
	out := make([]any, len(t.Fields))
	if isTuple(t) {
		if list, ok := v.([]any); ok {
			if len(list) != len(t.Fields) {
				return nil, e.fail(path, "tuple `%s` has %d fields, got %d", t.Name, len(t.Fields), len(list))
			}
			return list, nil
		}
	}
	rec, ok := v.(map[string]any)
	if !ok {
		return nil, e.fail(path, "expected an object for struct `%s`, found %T", t.Name, v)
	}
	for i, f := range t.Fields {
		x, ok := rec[f.Name]
		if !ok {
			return nil, e.fail(path, "missing field `%s` of struct `%s`", f.Name, t.Name)
		}
		out[i] = x
	}
	if len(rec) != len(t.Fields) {
		return nil, e.fail(path, "struct `%s` has %d fields, the object has %d", t.Name, len(t.Fields), len(rec))
	}
	return out, nil
}

func (e *encoder) fields(t *Type, at uint32, v any, path string) error {
	values, err := e.fieldValues(t, v, path)
	if err != nil {
		return err
	}
	for i, f := range t.Fields {
		if err := e.inline(f.Type, at+f.Offset, values[i], path+"."+f.Name); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) inline(ty int, at uint32, v any, path string) error {
	t := e.l.ty(ty)
	switch t.Kind {
	case "prim":
		return e.prim(t.Prim, at, v, path)
	case "handle":
		var h uint32
		var err error
		if e.h != nil && e.h.In != nil {
			h, err = e.h.In(v, t.Name, t.Borrow)
		} else {
			var x uint64
			x, err = toUint(v, 32)
			h = uint32(x)
		}
		if err != nil {
			return e.fail(path, "%v", err)
		}
		e.b.PutU32(at, h)
	case "enum":
		name, ok := v.(string)
		if !ok {
			return e.fail(path, "expected a case name of enum `%s`, found %T", t.Name, v)
		}
		for _, c := range t.Cases {
			if c.Name == name {
				e.b.PutUint(at, t.Width, c.Value)
				return nil
			}
		}
		return e.fail(path, "`%s` is not a case of enum `%s`", name, t.Name)
	case "flags":
		list, ok := v.([]any)
		if !ok {
			return e.fail(path, "expected a list of flag names of `%s`, found %T", t.Name, v)
		}
		for _, x := range list {
			name, _ := x.(string)
			i := indexOf(t.Flags, name)
			if i < 0 {
				return e.fail(path, "`%v` is not a flag of `%s`", x, t.Name)
			}
			e.b.buf[at+uint32(i/8)] |= 1 << (i % 8)
		}
	case "struct":
		if t.Dynamic {
			off, err := e.dynamicStruct(t, v, path)
			if err != nil {
				return err
			}
			e.b.PutU32(at, off)
			return nil
		}
		return e.fields(t, at, v, path)
	case "union":
		name, payload, err := e.variant(t, v, path)
		if err != nil {
			return err
		}
		return e.unionParts(t, at, at+t.PayloadOffset, name, payload, path)
	case "string":
		s, ok := v.(string)
		if !ok {
			return e.fail(path, "expected a string, found %T", v)
		}
		if t.UTF16 {
			return e.b.PutString16(at, s)
		}
		return e.b.PutString8(at, s)
	case "array":
		list, ok := v.([]any)
		if !ok && v != nil {
			return e.fail(path, "expected a list, found %T", v)
		}
		if e.l.ty(t.Elem).MapEntry {
			return e.mapEntries(t.Elem, at, list, path)
		}
		return e.array(t.Elem, t.Form, at, list, path)
	case "fixed":
		list, ok := v.([]any)
		if !ok || uint32(len(list)) != t.Len {
			return e.fail(path, "expected a list of %d elements", t.Len)
		}
		size := e.l.ty(t.Elem).Size
		for i, x := range list {
			if err := e.inline(t.Elem, at+uint32(i)*size, x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case "option":
		if v == nil {
			e.b.PutU8(at, 0)
			return nil
		}
		rec, ok := v.(map[string]any)
		x, has := rec["some"]
		if !ok || !has || len(rec) != 1 {
			return e.fail(path, "expected null or {\"some\": v}")
		}
		e.b.PutU8(at, 1)
		return e.inline(t.Some, at+t.PayloadOffset, x, path+"?")
	case "result":
		rec, ok := v.(map[string]any)
		if !ok || len(rec) != 1 {
			return e.fail(path, "expected {\"ok\": v} or {\"err\": v}")
		}
		disc, payloadTy, x := uint8(0), optID(t.Ok), any(nil)
		if p, has := rec["ok"]; has {
			x = p
		} else if p, has := rec["err"]; has {
			disc, payloadTy, x = 1, optID(t.Err), p
		} else {
			return e.fail(path, "expected {\"ok\": v} or {\"err\": v}")
		}
		e.b.PutU8(at, disc)
		if payloadTy >= 0 {
			return e.inline(payloadTy, at+t.PayloadOffset, x, path)
		}
		if x != nil {
			return e.fail(path, "this result case has no payload")
		}
	default:
		return e.fail(path, "unknown type kind %q", t.Kind)
	}
	return nil
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// variant is a union value's case name and payload.
func (e *encoder) variant(t *Type, v any, path string) (string, any, error) {
	if s, ok := v.(string); ok {
		return s, nil, nil
	}
	rec, ok := v.(map[string]any)
	if !ok || len(rec) != 1 {
		return "", nil, e.fail(path, "expected {\"case\": payload} for union `%s`", t.Name)
	}
	for k, x := range rec {
		return k, x, nil
	}
	return "", nil, nil
}

func (e *encoder) unionCase(t *Type, name, path string) (*Case, error) {
	for i := range t.Cases {
		if t.Cases[i].Name == name {
			return &t.Cases[i], nil
		}
	}
	return nil, e.fail(path, "`%s` is not a case of union `%s`", name, t.Name)
}

func (e *encoder) unionParts(t *Type, tagAt, payloadAt uint32, name string, payload any, path string) error {
	c, err := e.unionCase(t, name, path)
	if err != nil {
		return err
	}
	e.b.PutUint(tagAt, t.TagWidth, c.Tag)
	ct := optID(c.Type)
	path += "#" + name
	switch {
	case ct < 0 && payload == nil:
		return nil
	case ct < 0:
		return e.fail(path, "case `%s` has no payload", name)
	case t.Dynamic:
		off, err := e.outOfLine(ct, payload, path)
		if err != nil {
			return err
		}
		e.b.PutU32(payloadAt, off)
		return nil
	}
	return e.inline(ct, payloadAt, payload, path)
}

func (e *encoder) array(elem int, form string, at uint32, items []any, path string) error {
	n := uint32(len(items))
	et := e.l.ty(elem)
	switch form {
	case "plain":
		block, err := e.b.AllocPlainArray(at, et.Size, n, n)
		if err != nil {
			return err
		}
		for i, x := range items {
			if err := e.inline(elem, block+uint32(i)*et.Size, x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case "soa":
		hashes, sizes := columnSpec(et.Columns)
		cols, err := e.b.AllocSoaArray(at, n, n, hashes, sizes)
		if err != nil {
			return err
		}
		for i, x := range items {
			p := fmt.Sprintf("%s[%d]", path, i)
			if et.Kind == "union" {
				name, payload, err := e.variant(et, x, p)
				if err != nil {
					return err
				}
				if err := e.unionParts(et, cols[0]+uint32(i)*et.TagWidth, cols[1]+uint32(i)*et.PayloadSize, name, payload, p); err != nil {
					return err
				}
				continue
			}
			for j, c := range et.Columns {
				leaf, err := e.leafValue(elem, x, c.Path, p)
				if err != nil {
					return err
				}
				if err := e.inline(c.Leaf, cols[j]+uint32(i)*c.Size, leaf, p); err != nil {
					return err
				}
			}
		}
	default: // bunch
		soa := form == "bovos"
		type member struct{ payload any }
		cases := append([]Case(nil), et.Cases...)
		sort.SliceStable(cases, func(a, b int) bool { return cases[a].Tag < cases[b].Tag })
		names := make([]string, len(items))
		payloads := make([]any, len(items))
		for i, x := range items {
			name, payload, err := e.variant(et, x, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return err
			}
			c, err := e.unionCase(et, name, path)
			if err != nil {
				return err
			}
			if (optID(c.Type) < 0) != (payload == nil) && optID(c.Type) < 0 {
				return e.fail(path, "case `%s` payload does not match", name)
			}
			names[i], payloads[i] = name, payload
		}
		if n == 0 {
			e.b.PutSlot(at, Slot{})
			return nil
		}
		type group struct {
			c       Case
			members []any
		}
		var groups []group
		for _, c := range cases {
			var members []any
			for i := range items {
				if names[i] == c.Name {
					members = append(members, payloads[i])
				}
			}
			if len(members) > 0 {
				groups = append(groups, group{c, members})
			}
		}
		table, err := e.b.AllocBlock(BunchHeaderSize + BunchEntrySize*uint64(len(groups)))
		if err != nil {
			return err
		}
		e.b.PutSlot(at, Slot{table, n, n})
		e.b.PutU32(table, uint32(len(groups)))
		for j, g := range groups {
			entry := table + BunchHeaderSize + BunchEntrySize*uint32(j)
			e.b.PutU32(entry, uint32(g.c.Tag))
			count := uint32(len(g.members))
			ct := optID(g.c.Type)
			if ct < 0 {
				e.b.PutSlot(entry+4, Slot{0, count, count})
				continue
			}
			f := "plain"
			if soa && e.l.ty(ct).Kind == "struct" {
				f = "soa"
			}
			if err := e.array(ct, f, entry+4, g.members, path); err != nil {
				return err
			}
		}
	}
	return nil
}

func columnSpec(cols []Column) ([]uint32, []uint32) {
	hashes, sizes := make([]uint32, len(cols)), make([]uint32, len(cols))
	for j, c := range cols {
		hashes[j], sizes[j] = c.Hash, c.Size
	}
	return hashes, sizes
}

// leafValue is the value at `path` inside a (nested) struct value of type ty.
func (e *encoder) leafValue(ty int, v any, path []uint32, where string) (any, error) {
	if len(path) == 0 {
		return v, nil
	}
	t := e.l.ty(ty)
	values, err := e.fieldValues(t, v, where)
	if err != nil {
		return nil, err
	}
	return e.leafValue(t.Fields[path[0]].Type, values[path[0]], path[1:], where)
}

func (e *encoder) mapEntries(entry int, at uint32, entries []any, path string) error {
	et := e.l.ty(entry)
	pairs := make([]any, len(entries))
	for i, x := range entries {
		pair, ok := x.([]any)
		if !ok || len(pair) != 2 {
			return e.fail(fmt.Sprintf("%s[%d]", path, i), "expected a [key, value] pair")
		}
		pairs[i] = map[string]any{et.Fields[0].Name: pair[0], et.Fields[1].Name: pair[1]}
	}
	return e.array(entry, "soa", at, pairs, path)
}

func (e *encoder) prim(p string, at uint32, v any, path string) error {
	var err error
	switch p {
	case "bool":
		b, ok := v.(bool)
		if !ok {
			return e.fail(path, "expected a bool, found %T", v)
		}
		e.b.PutBool(at, b)
	case "char":
		s, ok := v.(string)
		r, size := utf8.DecodeRuneInString(s)
		if !ok || size == 0 || size != len(s) {
			return e.fail(path, "expected a one-character string, found %v", v)
		}
		return e.b.PutChar(at, r)
	case "f32":
		f, ferr := toFloat(v)
		e.b.PutF32(at, float32(f))
		err = ferr
	case "f64":
		f, ferr := toFloat(v)
		e.b.PutF64(at, f)
		err = ferr
	case "u8", "u16", "u32", "u64":
		bits := map[string]int{"u8": 8, "u16": 16, "u32": 32, "u64": 64}[p]
		x, uerr := toUint(v, bits)
		e.b.PutUint(at, uint32(bits/8), x)
		err = uerr
	case "i8", "i16", "i32", "i64":
		bits := map[string]int{"i8": 8, "i16": 16, "i32": 32, "i64": 64}[p]
		x, ierr := toInt(v, bits)
		e.b.PutUint(at, uint32(bits/8), uint64(x))
		err = ierr
	default:
		return e.fail(path, "unknown prim %q", p)
	}
	if err != nil {
		return e.fail(path, "%v", err)
	}
	return nil
}

func numberText(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32), true
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), true
	}
	return "", false
}

func toUint(v any, bits int) (uint64, error) {
	s, ok := numberText(v)
	if !ok {
		return 0, fmt.Errorf("expected an unsigned integer, found %T", v)
	}
	x, err := strconv.ParseUint(strings.TrimSuffix(s, ".0"), 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is not a u%d", s, bits)
	}
	return x, nil
}

func toInt(v any, bits int) (int64, error) {
	s, ok := numberText(v)
	if !ok {
		return 0, fmt.Errorf("expected an integer, found %T", v)
	}
	x, err := strconv.ParseInt(strings.TrimSuffix(s, ".0"), 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is not an s%d", s, bits)
	}
	return x, nil
}

// CanonicalNaN is the NaN the dynamic codec writes for "nan" (ABI.md §9).
var CanonicalNaN = math.Float64frombits(0x7ff8000000000000)

func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case string:
		switch x {
		case "nan", "NaN":
			return CanonicalNaN, nil
		case "inf":
			return math.Inf(1), nil
		case "-inf":
			return math.Inf(-1), nil
		}
	}
	s, ok := numberText(v)
	if !ok {
		return 0, fmt.Errorf("expected a number, found %T", v)
	}
	return strconv.ParseFloat(s, 64)
}

type decoder struct {
	l     *Layout
	m     Message
	h     *Handles
	depth int
	// budget is how many more array elements this decode may materialise.
	budget uint64
}

// An array's length is read from the message, and elements of zero size
// (empty structs, SoA columns a message leaves out, payload-less union
// cases) take no bytes, so a short hostile message could ask for billions
// of Go values. The decoder materialises at most this many elements in
// all, plus so many per byte of the message (the allowance a message of
// real data needs), in the spirit of validation's `max_visit` (FORMAT.md §9).
const (
	decodeBudgetBase    = 1 << 24
	decodeBudgetPerByte = 8
)

func decodeBudget(msgLen int) uint64 {
	return decodeBudgetBase + decodeBudgetPerByte*uint64(msgLen)
}

// charge takes n elements from the budget.
func (d *decoder) charge(n uint32, at uint32) error {
	if uint64(n) > d.budget {
		return errAt(at, "the message asks for more values than its size allows (%d elements over the decode budget)", uint64(n)-d.budget)
	}
	d.budget -= uint64(n)
	return nil
}

// maxDepth bounds nesting as validation's default limit does (FORMAT.md §9).
const maxDepth = 64

func (d *decoder) deeper(at uint32) error {
	d.depth++
	if d.depth > maxDepth {
		return errAt(at, "nesting deeper than %d", maxDepth)
	}
	return nil
}

func (d *decoder) outOfLine(ty int, at uint32) (any, error) {
	if err := d.deeper(at); err != nil {
		return nil, err
	}
	defer func() { d.depth-- }()
	t := d.l.ty(ty)
	if t.Kind == "struct" && t.Dynamic {
		return d.dynamicStruct(t, at)
	}
	return d.inline(ty, at)
}

func (d *decoder) record(t *Type, values []any) any {
	if isTuple(t) {
		return values
	}
	rec := make(map[string]any, len(values))
	for i, f := range t.Fields {
		rec[f.Name] = values[i]
	}
	return rec
}

func (d *decoder) dynamicStruct(t *Type, at uint32) (any, error) {
	body, err := d.m.Body(at)
	if err != nil {
		return nil, err
	}
	values := make([]any, len(t.Fields))
	for i, f := range t.Fields {
		if p, ok := body.Field(f.Offset, d.l.ty(f.Type).Size); ok {
			values[i], err = d.inline(f.Type, p)
		} else {
			values[i], err = d.defaultValue(f.Type, f.Default, at)
		}
		if err != nil {
			return nil, err
		}
	}
	return d.record(t, values), nil
}

func (d *decoder) handle(t *Type, h uint32) any {
	if d.h != nil && d.h.Out != nil {
		return d.h.Out(h, t.Name, t.Borrow)
	}
	return json.Number(strconv.FormatUint(uint64(h), 10))
}

func (d *decoder) inline(ty int, at uint32) (any, error) {
	t := d.l.ty(ty)
	m := d.m
	switch t.Kind {
	case "prim":
		return d.prim(t.Prim, at)
	case "handle":
		h, err := m.U32(at)
		if err != nil {
			return nil, err
		}
		return d.handle(t, h), nil
	case "enum":
		x, err := m.Uint(at, t.Width)
		if err != nil {
			return nil, err
		}
		for _, c := range t.Cases {
			if c.Value == x {
				return c.Name, nil
			}
		}
		return nil, errAt(at, "invalid enum value %d", x)
	case "flags":
		bytes, err := m.Slice(at, uint64(t.Size))
		if err != nil {
			return nil, err
		}
		set := []any{}
		for i, name := range t.Flags {
			if bytes[i/8]&(1<<(i%8)) != 0 {
				set = append(set, name)
			}
		}
		for i := len(t.Flags); i < 8*len(bytes); i++ {
			if bytes[i/8]&(1<<(i%8)) != 0 {
				return nil, errAt(at, "undeclared flag bits")
			}
		}
		return set, nil
	case "struct":
		if t.Dynamic {
			off, err := m.U32(at)
			if err != nil {
				return nil, err
			}
			if err := d.deeper(at); err != nil {
				return nil, err
			}
			defer func() { d.depth-- }()
			return d.dynamicStruct(t, off)
		}
		values := make([]any, len(t.Fields))
		for i, f := range t.Fields {
			v, err := d.inline(f.Type, at+f.Offset)
			if err != nil {
				return nil, err
			}
			values[i] = v
		}
		return d.record(t, values), nil
	case "union":
		tag, err := m.Uint(at, t.TagWidth)
		if err != nil {
			return nil, err
		}
		return d.unionParts(t, tag, at, at+t.PayloadOffset)
	case "string":
		if t.UTF16 {
			return m.String16(at)
		}
		return m.String8(at)
	case "array":
		slot, err := m.Slot(at)
		if err != nil {
			return nil, err
		}
		if err := d.deeper(at); err != nil {
			return nil, err
		}
		defer func() { d.depth-- }()
		items, err := d.array(t.Elem, t.Form, slot)
		if err != nil {
			return nil, err
		}
		if et := d.l.ty(t.Elem); et.MapEntry {
			for i, x := range items {
				rec, _ := x.(map[string]any)
				items[i] = []any{rec[et.Fields[0].Name], rec[et.Fields[1].Name]}
			}
		}
		return items, nil
	case "fixed":
		size := d.l.ty(t.Elem).Size
		items := make([]any, 0, t.Len)
		for i := uint32(0); i < t.Len; i++ {
			v, err := d.inline(t.Elem, at+i*size)
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		return items, nil
	case "option":
		disc, err := m.U8(at)
		if err != nil {
			return nil, err
		}
		switch disc {
		case 0:
			return nil, nil
		case 1:
			v, err := d.inline(t.Some, at+t.PayloadOffset)
			if err != nil {
				return nil, err
			}
			return map[string]any{"some": v}, nil
		}
		return nil, errAt(at, "invalid option discriminant %d", disc)
	case "result":
		disc, err := m.U8(at)
		if err != nil {
			return nil, err
		}
		key, pt := "ok", optID(t.Ok)
		switch disc {
		case 0:
		case 1:
			key, pt = "err", optID(t.Err)
		default:
			return nil, errAt(at, "invalid result discriminant %d", disc)
		}
		var payload any
		if pt >= 0 {
			if payload, err = d.inline(pt, at+t.PayloadOffset); err != nil {
				return nil, err
			}
		}
		return map[string]any{key: payload}, nil
	}
	return nil, errAt(at, "unknown type kind %q", t.Kind)
}

func (d *decoder) prim(p string, at uint32) (any, error) {
	m := d.m
	num := func(x any, err error) (any, error) {
		if err != nil {
			return nil, err
		}
		return json.Number(fmt.Sprint(x)), nil
	}
	str := func(x any, err error) (any, error) {
		if err != nil {
			return nil, err
		}
		return fmt.Sprint(x), nil
	}
	switch p {
	case "bool":
		return m.Bool(at)
	case "char":
		r, err := m.Char(at)
		if err != nil {
			return nil, err
		}
		return string(r), nil
	case "u8":
		return num(m.U8(at))
	case "u16":
		return num(m.U16(at))
	case "u32":
		return num(m.U32(at))
	case "u64":
		return str(m.U64(at))
	case "i8":
		return num(m.I8(at))
	case "i16":
		return num(m.I16(at))
	case "i32":
		return num(m.I32(at))
	case "i64":
		return str(m.I64(at))
	case "f32":
		f, err := m.F32(at)
		return floatValue(float64(f)), err
	case "f64":
		f, err := m.F64(at)
		return floatValue(f), err
	}
	return nil, errAt(at, "unknown prim %q", p)
}

func floatValue(f float64) any {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return f
}

func (d *decoder) unionParts(t *Type, tag uint64, tagAt, payloadAt uint32) (any, error) {
	for _, c := range t.Cases {
		if c.Tag != tag {
			continue
		}
		ct := optID(c.Type)
		var payload any
		var err error
		switch {
		case ct < 0:
		case t.Dynamic:
			off, err := d.m.U32(payloadAt)
			if err != nil {
				return nil, err
			}
			ctt := d.l.ty(ct)
			if off == 0 && !(ctt.Kind == "struct" && ctt.Dynamic) {
				payload, err = d.zeroValue(ct, payloadAt, 0)
			} else {
				payload, err = d.outOfLine(ct, off)
			}
			if err != nil {
				return nil, err
			}
		default:
			if payload, err = d.inline(ct, payloadAt); err != nil {
				return nil, err
			}
		}
		return map[string]any{c.Name: payload}, nil
	}
	return nil, errAt(tagAt, "unknown union tag %d", tag)
}

func (d *decoder) array(elem int, form string, slot Slot) ([]any, error) {
	if err := d.charge(slot.Length, slot.Offset); err != nil {
		return nil, err
	}
	et := d.l.ty(elem)
	items := make([]any, 0, min(slot.Length, 1<<16))
	switch form {
	case "plain":
		for i := uint32(0); i < slot.Length; i++ {
			at := uint32(0)
			if et.Size != 0 {
				at = slot.Offset + i*et.Size
			}
			v, err := d.inline(elem, at)
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		return items, nil
	case "soa":
		return d.soa(elem, slot)
	}
	entries, err := d.m.Bunch(slot)
	if err != nil {
		return nil, err
	}
	for _, entry := range entries {
		var c *Case
		for i := range et.Cases {
			if et.Cases[i].Tag == uint64(entry.Tag) {
				c = &et.Cases[i]
			}
		}
		if c == nil {
			return nil, errAt(entry.At-4, "unknown union tag %d", entry.Tag)
		}
		ct := optID(c.Type)
		if ct < 0 {
			for j := uint32(0); j < entry.Slot.Length; j++ {
				items = append(items, map[string]any{c.Name: nil})
			}
			continue
		}
		f := "plain"
		if form == "bovos" && d.l.ty(ct).Kind == "struct" {
			f = "soa"
		}
		values, err := d.array(ct, f, entry.Slot)
		if err != nil {
			return nil, err
		}
		for _, v := range values {
			items = append(items, map[string]any{c.Name: v})
		}
	}
	return items, nil
}

func (d *decoder) soa(elem int, slot Slot) ([]any, error) {
	et := d.l.ty(elem)
	soa, err := d.m.Soa(slot)
	if err != nil {
		return nil, err
	}
	hashes, _ := columnSpec(et.Columns)
	cols, found, err := soa.Columns(hashes)
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, min(slot.Length, 1<<16))
	if et.Kind == "union" {
		if slot.Length == 0 {
			return items, nil
		}
		if !found[0] || !found[1] {
			return nil, errAt(slot.Offset, "union column missing")
		}
		for i := uint32(0); i < slot.Length; i++ {
			tagAt := cols[0] + i*et.TagWidth
			tag, err := d.m.Uint(tagAt, et.TagWidth)
			if err != nil {
				return nil, err
			}
			v, err := d.unionParts(et, tag, tagAt, cols[1]+i*et.PayloadSize)
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		return items, nil
	}
	for i := uint32(0); i < slot.Length; i++ {
		leaves := map[string]any{}
		for j, c := range et.Columns {
			if !found[j] {
				continue
			}
			at := uint32(0)
			if c.Size != 0 {
				at = cols[j] + i*c.Size
			}
			v, err := d.inline(c.Leaf, at)
			if err != nil {
				return nil, err
			}
			leaves[pathKey(c.Path)] = v
		}
		v, err := d.assemble(et, nil, leaves, slot.Offset)
		if err != nil {
			return nil, err
		}
		items = append(items, v)
	}
	return items, nil
}

func pathKey(path []uint32) string { return fmt.Sprint(path) }

func (d *decoder) assemble(t *Type, path []uint32, leaves map[string]any, at uint32) (any, error) {
	values := make([]any, len(t.Fields))
	for i, f := range t.Fields {
		p := append(append([]uint32(nil), path...), uint32(i))
		ft := d.l.ty(f.Type)
		var err error
		switch v, ok := leaves[pathKey(p)]; {
		case ft.Kind == "struct" && !ft.Dynamic:
			values[i], err = d.assemble(ft, p, leaves, at)
		case ok:
			values[i] = v
		case len(p) == 1:
			values[i], err = d.defaultValue(f.Type, f.Default, at)
		default:
			values[i], err = d.zeroValue(f.Type, at, 0)
		}
		if err != nil {
			return nil, err
		}
	}
	return d.record(t, values), nil
}

func (d *decoder) defaultValue(ty int, lit any, at uint32) (any, error) {
	if lit == nil {
		return d.zeroValue(ty, at, 0)
	}
	if v, ok := d.literal(ty, lit); ok {
		return v, nil
	}
	return nil, ErrNoDefault(at)
}

// literal is a field's default (its JSON form in the layout) as a value of type ty.
func (d *decoder) literal(ty int, lit any) (any, bool) {
	t := d.l.ty(ty)
	s, isString := lit.(string)
	switch t.Kind {
	case "prim":
		switch t.Prim {
		case "bool":
			b, ok := lit.(bool)
			return b, ok
		case "char":
			r, size := utf8.DecodeRuneInString(s)
			return string(r), isString && size == len(s) && size > 0
		case "f32", "f64":
			f, err := toFloat(lit)
			if err != nil {
				return nil, false
			}
			if t.Prim == "f32" {
				f = float64(float32(f))
			}
			return floatValue(f), true
		case "u64", "i64":
			return s, isString
		}
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return nil, false
		}
		return json.Number(s), true
	case "handle":
		x, err := strconv.ParseUint(s, 10, 32)
		return d.handle(t, uint32(x)), err == nil
	case "string":
		return s, isString
	case "enum":
		return s, isString && hasCase(t, s)
	case "flags":
		return []any{s}, isString && indexOf(t.Flags, s) >= 0
	case "union":
		for _, c := range t.Cases {
			if c.Name == s && c.Type == nil {
				return map[string]any{c.Name: nil}, true
			}
		}
	}
	return nil, false
}

func hasCase(t *Type, name string) bool {
	for _, c := range t.Cases {
		if c.Name == name {
			return true
		}
	}
	return false
}

// zeroValue is what all-zero bytes of type `ty` decode to (FORMAT.md §7).
func (d *decoder) zeroValue(ty int, at uint32, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errAt(at, "nesting deeper than %d", maxDepth)
	}
	t := d.l.ty(ty)
	switch t.Kind {
	case "prim":
		switch t.Prim {
		case "bool":
			return false, nil
		case "char":
			return "\x00", nil
		case "u64", "i64":
			return "0", nil
		case "f32", "f64":
			return float64(0), nil
		}
		return json.Number("0"), nil
	case "handle":
		return d.handle(t, 0), nil
	case "enum":
		for _, c := range t.Cases {
			if c.Value == 0 {
				return c.Name, nil
			}
		}
		return nil, ErrNoDefault(at)
	case "flags":
		return []any{}, nil
	case "struct":
		values := make([]any, len(t.Fields))
		for i, f := range t.Fields {
			var err error
			if t.Dynamic && f.Default != nil {
				v, ok := d.literal(f.Type, f.Default)
				if !ok {
					return nil, ErrNoDefault(at)
				}
				values[i] = v
			} else if values[i], err = d.zeroValue(f.Type, at, depth+1); err != nil {
				return nil, err
			}
		}
		return d.record(t, values), nil
	case "union":
		for _, c := range t.Cases {
			if c.Tag != 0 {
				continue
			}
			ct := optID(c.Type)
			if ct < 0 {
				return map[string]any{c.Name: nil}, nil
			}
			ctt := d.l.ty(ct)
			oolSize := ctt.Size
			if ctt.Kind == "struct" && ctt.Dynamic {
				oolSize = ctt.BodySize
			}
			if t.Dynamic && oolSize > 0 && !(ctt.Kind == "struct" && ctt.Dynamic) {
				return nil, ErrNoDefault(at)
			}
			v, err := d.zeroValue(ct, at, depth+1)
			if err != nil {
				return nil, err
			}
			return map[string]any{c.Name: v}, nil
		}
		return nil, ErrNoDefault(at)
	case "string":
		return "", nil
	case "array":
		return []any{}, nil
	case "fixed":
		z, err := d.zeroValue(t.Elem, at, depth+1)
		if err != nil {
			return nil, err
		}
		items := make([]any, t.Len)
		for i := range items {
			items[i] = z
		}
		return items, nil
	case "option":
		return nil, nil
	case "result":
		if ok := optID(t.Ok); ok >= 0 {
			v, err := d.zeroValue(ok, at, depth+1)
			if err != nil {
				return nil, err
			}
			return map[string]any{"ok": v}, nil
		}
		return map[string]any{"ok": nil}, nil
	}
	return nil, errAt(at, "unknown type kind %q", t.Kind)
}
