package host_test

// Runs every case of the host kit (`cargo run -p xtask -- host-kit DIR`,
// docs/HOSTS.md) through the Go host and compares value for value:
// results, traps, exits, host-function calls, stdout, stderr and files.
// KARMEM_HOST_KIT names the kit; without it the test is skipped (the Rust
// test tests/tests/go_host.rs builds a kit and sets it).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"karmem-bridge/hosts/go/host"
	"karmem-bridge/hosts/go/karmem"
)

type kitIndex struct {
	WASI struct {
		Args     []string                     `json:"args"`
		Env      map[string]string            `json:"env"`
		Preopens map[string]map[string]string `json:"preopens"`
	} `json:"wasi"`
	Fixtures []struct {
		Name   string `json:"name"`
		Module string `json:"module"`
		Layout string `json:"layout"`
		Cases  string `json:"cases"`
	} `json:"fixtures"`
}

type kitCase struct {
	Line int    `json:"line"`
	Text string `json:"text"`
	Call *struct {
		Interface string `json:"interface"`
		Function  string `json:"function"`
		Args      []any  `json:"args"`
		Bind      string `json:"bind"`
	} `json:"call"`
	Drop *struct {
		Handle    string `json:"handle"`
		Interface string `json:"interface"`
		Resource  string `json:"resource"`
	} `json:"drop"`
	Start   any            `json:"start"`
	Effects []any          `json:"effects"`
	Expect  map[string]any `json:"expect"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// cacheDir is wazero's compilation cache under target/ (or a temp dir).
func cacheDir(t *testing.T) string {
	if d := os.Getenv("KARMEM_GO_CACHE"); d != "" {
		return d
	}
	return t.TempDir()
}

func TestKit(t *testing.T) {
	kit := os.Getenv("KARMEM_HOST_KIT")
	if kit == "" {
		t.Skip("KARMEM_HOST_KIT is not set: build a kit with `cargo run -p xtask -- host-kit DIR` (tests/tests/go_host.rs does)")
	}
	var index kitIndex
	readJSON(t, filepath.Join(kit, "index.json"), &index)
	ctx := context.Background()
	rt, err := host.NewRuntime(ctx, host.Config{CacheDir: cacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	total := 0
	for _, f := range index.Fixtures {
		t.Run(f.Name, func(t *testing.T) {
			wasm, err := os.ReadFile(filepath.Join(kit, f.Module))
			if err != nil {
				t.Fatal(err)
			}
			layoutText, err := os.ReadFile(filepath.Join(kit, f.Layout))
			if err != nil {
				t.Fatal(err)
			}
			layout, err := karmem.ParseLayout(string(layoutText))
			if err != nil {
				t.Fatal(err)
			}
			var file struct {
				Cases []kitCase `json:"cases"`
			}
			readJSON(t, filepath.Join(kit, f.Cases), &file)
			mod, err := rt.Load(ctx, wasm)
			if err != nil {
				t.Fatal(err)
			}
			r := newRunner(t, mod, layout, &index)
			for _, c := range file.Cases {
				r.run(ctx, c)
				total++
			}
			r.close(ctx)
		})
	}
	t.Logf("%d cases", total)
}

// runner runs one fixture's cases in order, in one instance until a trap or exit.
type runner struct {
	t        *testing.T
	mod      *host.Module
	layout   *karmem.Layout
	index    *kitIndex
	sandbox  string
	inst     *host.Instance
	stdout   bytes.Buffer
	stderr   bytes.Buffer
	bindings map[string]uint32
	effects  []any
	fixture  *fixtureHost
}

func newRunner(t *testing.T, mod *host.Module, layout *karmem.Layout, index *kitIndex) *runner {
	r := &runner{t: t, mod: mod, layout: layout, index: index, sandbox: t.TempDir()}
	for guest, files := range index.WASI.Preopens {
		dir := filepath.Join(r.sandbox, filepath.Base(guest))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, contents := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(contents), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return r
}

func (r *runner) close(ctx context.Context) {
	if r.inst != nil {
		r.inst.Close(ctx)
		r.inst = nil
	}
}

func (r *runner) instance(ctx context.Context) (*host.Instance, error) {
	if r.inst != nil {
		return r.inst, nil
	}
	r.bindings = map[string]uint32{}
	r.fixture = &fixtureHost{r: r, tallies: map[uint32]uint64{}}
	dirs := map[string]string{}
	for guest := range r.index.WASI.Preopens {
		dirs[guest] = filepath.Join(r.sandbox, filepath.Base(guest))
	}
	imports := map[string]karmem.Handler{}
	for _, f := range r.layout.Functions {
		imports[f.Interface+"."+f.Name] = r.fixture.handler(f)
	}
	for _, t := range r.layout.Types {
		if t.Kind == "handle" {
			for _, f := range r.layout.Functions {
				imports[f.Interface+".[resource-drop]"+t.Name] = r.fixture.drop(t.Name)
			}
		}
	}
	inst, err := r.mod.Instantiate(ctx, host.Options{
		Args:    r.index.WASI.Args,
		Env:     r.index.WASI.Env,
		Dirs:    dirs,
		Stdin:   strings.NewReader(""),
		Stdout:  &r.stdout,
		Stderr:  &r.stderr,
		Layout:  r.layout,
		Imports: imports,
	})
	if err != nil {
		return nil, err
	}
	r.inst = inst
	return inst, nil
}

// snapshot is every file of the sandbox with its contents.
func (r *runner) snapshot() map[string]string {
	files := map[string]string{}
	filepath.WalkDir(r.sandbox, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			rel, _ := filepath.Rel(r.sandbox, path)
			files["/"+filepath.ToSlash(rel)] = string(data)
		}
		return nil
	})
	return files
}

func (r *runner) run(ctx context.Context, c kitCase) {
	t := r.t
	where := fmt.Sprintf("line %d `%s`", c.Line, c.Text)
	r.stdout.Reset()
	r.stderr.Reset()
	r.effects = nil
	before := r.snapshot()
	inst, err := r.instance(ctx)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	var got map[string]any
	switch {
	case c.Call != nil:
		got = r.call(ctx, inst, c)
	case c.Drop != nil:
		h := r.bindings[c.Drop.Handle]
		if err := inst.Drop(ctx, c.Drop.Interface, c.Drop.Resource, h); err != nil {
			got = r.failure(err)
		} else {
			got = map[string]any{"returns": []any{}}
		}
	default:
		code, err := inst.Start(ctx)
		switch {
		case err != nil:
			got = r.failure(err)
		case code == 0:
			got = map[string]any{"returns": []any{map[string]any{"ok": nil}}}
		case code == 1:
			got = map[string]any{"returns": []any{map[string]any{"err": nil}}}
		default:
			got = map[string]any{"exit": json.Number(strconv.Itoa(int(code)))}
		}
		if code != 0 {
			r.close(ctx)
		}
	}
	if _, failed := got["returns"]; !failed {
		r.close(ctx)
	}
	effects := append([]any(nil), r.effects...)
	if r.stdout.Len() > 0 {
		effects = append(effects, map[string]any{"stdout": r.stdout.String()})
	}
	if r.stderr.Len() > 0 {
		effects = append(effects, map[string]any{"stderr": r.stderr.String()})
	}
	after := r.snapshot()
	var paths []string
	for p, contents := range after {
		if old, ok := before[p]; !ok || old != contents {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		effects = append(effects, map[string]any{"file": map[string]any{"path": p, "contents": after[p]}})
	}
	if !equal(c.Expect, got) {
		t.Errorf("%s:\n  expected %s\n  got      %s", where, show(c.Expect), show(got))
	}
	want := c.Effects
	if want == nil {
		want = []any{}
	}
	if effects == nil {
		effects = []any{}
	}
	if !equal(want, effects) {
		t.Errorf("%s: effects:\n  expected %s\n  got      %s", where, show(want), show(effects))
	}
}

func (r *runner) failure(err error) map[string]any {
	var f *host.Failure
	if errors.As(err, &f) && f.Exit != nil {
		return map[string]any{"exit": json.Number(strconv.Itoa(int(f.Exit.ExitCode())))}
	}
	return map[string]any{"trap": true}
}

func (r *runner) call(ctx context.Context, inst *host.Instance, c kitCase) map[string]any {
	first := true
	handles := &karmem.Handles{
		In: func(v any, resource string, borrow bool) (uint32, error) {
			if s, ok := v.(string); ok {
				h, ok := r.bindings[s]
				if !ok {
					return 0, fmt.Errorf("unbound handle %s", s)
				}
				return h, nil
			}
			n, err := strconv.ParseUint(fmt.Sprint(v), 10, 32)
			return uint32(n), err
		},
		Out: func(h uint32, resource string, borrow bool) any {
			if first && c.Call.Bind != "" {
				first = false
				r.bindings[c.Call.Bind] = h
				return c.Call.Bind
			}
			if borrow {
				return "borrow"
			}
			return "own"
		},
	}
	msg, err := karmem.EncodeArgs(r.layout, c.Call.Interface, c.Call.Function, c.Call.Args, handles)
	if err != nil {
		r.t.Fatalf("line %d: encoding the arguments: %v", c.Line, err)
	}
	out, err := inst.Call(ctx, c.Call.Interface+"."+c.Call.Function, msg)
	if err != nil {
		return r.failure(err)
	}
	values, err := karmem.DecodeResults(r.layout, c.Call.Interface, c.Call.Function, out, handles)
	if err != nil {
		r.t.Errorf("line %d: decoding the results: %v", c.Line, err)
		return map[string]any{"trap": true}
	}
	return map[string]any{"returns": values}
}

// fixtureHost serves the fixtures' host imports as tests/src/host.rs does.
type fixtureHost struct {
	r       *runner
	nextID  uint64
	tallies map[uint32]uint64
	next    uint32
}

func (h *fixtureHost) handler(f karmem.Function) karmem.Handler {
	l := h.r.layout
	return func(ctx context.Context, msg []byte) ([]byte, error) {
		args, err := karmem.DecodeValue(l, f.Params, msg, nil)
		if err != nil {
			return nil, err
		}
		rec, _ := args.(map[string]any)
		params := l.Types[f.Params].Fields
		positional := make([]any, len(params))
		for i, p := range params {
			positional[i] = rec[p.Name]
		}
		shown, _ := karmem.DecodeValue(l, f.Params, msg, &karmem.Handles{Out: func(uint32, string, bool) any { return "handle" }})
		shownRec, _ := shown.(map[string]any)
		shownArgs := make([]any, len(params))
		for i, p := range params {
			shownArgs[i] = shownRec[p.Name]
		}
		var result any
		switch f.Name {
		case "next_id":
			h.nextID++
			result = json.Number(strconv.FormatUint(h.nextID, 10))
		case "lines":
			count, _ := strconv.Atoi(fmt.Sprint(positional[0]))
			lines := make([]any, count)
			for i := range lines {
				lines[i] = fmt.Sprint(positional[1], i)
			}
			result = lines
		case "tally_new", "tally_named":
			start := uint64(0)
			if f.Name == "tally_new" {
				start, _ = strconv.ParseUint(fmt.Sprint(positional[0]), 10, 64)
			} else {
				start = uint64(len(fmt.Sprint(positional[0])))
			}
			h.next++
			h.tallies[h.next] = start
			result = json.Number(strconv.FormatUint(uint64(h.next), 10))
		case "tally_add":
			id64, _ := strconv.ParseUint(fmt.Sprint(positional[0]), 10, 32)
			n, _ := strconv.ParseUint(fmt.Sprint(positional[1]), 10, 64)
			total, ok := h.tallies[uint32(id64)]
			if !ok {
				return nil, fmt.Errorf("unknown tally %d", id64)
			}
			h.tallies[uint32(id64)] = total + n
			result = strconv.FormatUint(total+n, 10)
		}
		results := l.Types[f.Results].Fields
		effect := map[string]any{"interface": f.Interface, "function": f.Name, "args": shownArgs}
		var out []byte
		if len(results) > 0 {
			out, err = karmem.EncodeValue(l, f.Results, map[string]any{results[0].Name: result}, nil)
			if err != nil {
				return nil, fmt.Errorf("host `%s`: %w", f.Name, err)
			}
			shown, err := karmem.DecodeValue(l, f.Results, out, &karmem.Handles{Out: func(uint32, string, bool) any { return "handle" }})
			if err != nil {
				return nil, err
			}
			effect["result"] = shown.(map[string]any)[results[0].Name]
		}
		h.r.effects = append(h.r.effects, map[string]any{"host": effect})
		return out, nil
	}
}

func (h *fixtureHost) drop(resource string) karmem.Handler {
	return func(ctx context.Context, msg []byte) ([]byte, error) {
		id := uint32(msg[0]) | uint32(msg[1])<<8 | uint32(msg[2])<<16 | uint32(msg[3])<<24
		total, ok := h.tallies[id]
		if !ok {
			return nil, fmt.Errorf("dropping unknown %s %d", resource, id)
		}
		delete(h.tallies, id)
		h.r.effects = append(h.r.effects, map[string]any{"host_drop": map[string]any{"resource": resource, "state": strconv.FormatUint(total, 10)}})
		return nil, nil
	}
}

func show(v any) string {
	b, _ := json.Marshal(v)
	s := string(b)
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}

// equal compares JSON-like values: numbers by value (floats by bits, any NaN
// equal), objects by keys, the "wit" keys of the kit ignored.
func equal(a, b any) bool {
	if na, ok := number(a); ok {
		nb, ok := number(b)
		if !ok {
			return false
		}
		if math.IsNaN(na) || math.IsNaN(nb) {
			return math.IsNaN(na) && math.IsNaN(nb)
		}
		if na == nb && math.Signbit(na) == math.Signbit(nb) {
			// equal floats; for big integers compare the text too
			return bigEqual(a, b)
		}
		return false
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool, string:
		return a == b
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return false
		}
		keys := func(m map[string]any) []string {
			var out []string
			for k := range m {
				if k != "wit" {
					out = append(out, k)
				}
			}
			sort.Strings(out)
			return out
		}
		kx, ky := keys(x), keys(y)
		if strings.Join(kx, "\x00") != strings.Join(ky, "\x00") {
			return false
		}
		for _, k := range kx {
			if !equal(x[k], y[k]) {
				return false
			}
		}
		return true
	}
	return false
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if s := string(x); strings.HasPrefix(s, "-0") && f == 0 {
			f = math.Copysign(0, -1)
		}
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

func bigEqual(a, b any) bool {
	sa, okA := a.(json.Number)
	sb, okB := b.(json.Number)
	if !okA || !okB {
		return true
	}
	ia, errA := strconv.ParseInt(string(sa), 10, 64)
	ib, errB := strconv.ParseInt(string(sb), 10, 64)
	if errA == nil && errB == nil {
		return ia == ib
	}
	return true
}
