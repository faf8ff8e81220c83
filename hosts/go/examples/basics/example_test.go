package basics_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/sys"

	"karmem-bridge/hosts/go/examples/basics"
	"karmem-bridge/hosts/go/host"
	"karmem-bridge/hosts/go/karmem"
)

// The README's example: load a lowered module and call add(2, 40) through
// the generated code. The module comes from the host kit (KARMEM_HOST_KIT).
func TestAdd(t *testing.T) {
	kit := os.Getenv("KARMEM_HOST_KIT")
	if kit == "" {
		t.Skip("KARMEM_HOST_KIT is not set")
	}
	wasm, err := os.ReadFile(filepath.Join(kit, "basics.wasm"))
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	rt, _ := host.NewRuntime(ctx, host.Config{CacheDir: t.TempDir()})
	defer rt.Close(ctx)
	mod, err := rt.Load(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := mod.Instantiate(ctx, host.Options{Layout: basics.KarmemLayout})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := basics.CallBasicsAdd(ctx, inst, basics.BasicsAddParams{A: 2, B: 40})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sum.Ret) != "42" {
		t.Fatalf("add(2, 40) = %d", sum.Ret)
	}

	// The same call by id through KarmemCall, and as JSON-like values.
	var id uint32
	for _, d := range inst.Exports {
		for _, f := range d.Functions {
			if d.Name == "basics" && f.Name == "add" {
				id = f.Id
			}
		}
	}
	args := basics.BasicsAddParams{A: 40, B: 2}
	msg, _ := args.Encode()
	out, err := inst.CallID(ctx, id, msg)
	if err != nil {
		t.Fatal(err)
	}
	view, err := basics.ViewBasicsAddResults(out)
	if err != nil {
		t.Fatal(err)
	}
	if ret, err := view.Ret(); err != nil || ret != 42 {
		t.Fatalf("add by id: %d, %v", ret, err)
	}
	values, err := inst.CallValues(ctx, "basics", "add", 1, 2)
	if err != nil || fmt.Sprint(values) != "[3]" {
		t.Fatalf("add as values: %v, %v", values, err)
	}

	// A typed host import: the guest's `host.log` served by a Go function.
	var lines []string
	logging, err := mod.Instantiate(ctx, host.Options{
		Imports: map[string]karmem.Handler{
			"host.log": basics.HandleHostLog(func(_ context.Context, p basics.HostLogParams) (basics.HostLogResults, error) {
				lines = append(lines, p.Line)
				return basics.HostLogResults{}, nil
			}),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	greeting, err := basics.CallBasicsGreet(ctx, logging, basics.BasicsGreetParams{Name: "ann"})
	if err != nil || greeting.Ret != "hello, ann" || fmt.Sprint(lines) != "[hello, ann]" {
		t.Fatalf("greet: %q, %v, logged %q", greeting.Ret, err, lines)
	}

	// A timeout: the call's context ends while the guest waits on its
	// import; wazero closes the instance and the call fails as a deadline.
	slow, err := mod.Instantiate(ctx, host.Options{
		Imports: map[string]karmem.Handler{
			"host.log": func(ctx context.Context, _ []byte) ([]byte, error) {
				<-ctx.Done()
				return nil, nil
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = basics.CallBasicsGreet(short, slow, basics.BasicsGreetParams{Name: "bob"})
	var failure *host.Failure
	if !errors.As(err, &failure) || failure.Exit == nil || failure.Exit.ExitCode() != sys.ExitCodeDeadlineExceeded {
		t.Fatalf("a call past its deadline: %v", err)
	}
	if _, err := basics.CallBasicsAdd(ctx, slow, basics.BasicsAddParams{A: 1, B: 1}); err == nil {
		t.Fatal("a timed-out instance still answers")
	}

	// A memory limit below what the module declares refuses it.
	small, _ := host.NewRuntime(ctx, host.Config{MemoryLimitPages: 1})
	defer small.Close(ctx)
	if m, err := small.Load(ctx, wasm); err == nil {
		if _, err := m.Instantiate(ctx, host.Options{}); err == nil {
			t.Fatal("a 1-page memory limit admitted the module")
		}
	}
}

// Go host call overhead of the scalar add (docs/BENCHMARKS.md, "Go host"):
// typed (encode, call, decode) and raw (a pre-encoded message, the result
// message copied out).
func BenchmarkAdd(b *testing.B) {
	kit := os.Getenv("KARMEM_HOST_KIT")
	if kit == "" {
		b.Skip("KARMEM_HOST_KIT is not set")
	}
	wasm, err := os.ReadFile(filepath.Join(kit, "basics.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rt, _ := host.NewRuntime(ctx, host.Config{CacheDir: b.TempDir()})
	defer rt.Close(ctx)
	mod, err := rt.Load(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	inst, err := mod.Instantiate(ctx, host.Options{Layout: basics.KarmemLayout})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("typed", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := basics.CallBasicsAdd(ctx, inst, basics.BasicsAddParams{A: uint32(i), B: 40}); err != nil {
				b.Fatal(err)
			}
		}
	})
	args := basics.BasicsAddParams{A: 2, B: 40}
	msg, _ := args.Encode()
	b.Run("raw", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := inst.Call(ctx, "basics.add", msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Without wazero's per-call context watch (Config.NoContextWatch).
	unwatched, _ := host.NewRuntime(ctx, host.Config{CacheDir: b.TempDir(), NoContextWatch: true})
	defer unwatched.Close(ctx)
	mod2, err := unwatched.Load(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	inst2, err := mod2.Instantiate(ctx, host.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw-no-context-watch", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := inst2.Call(ctx, "basics.add", msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}
