// karmem-wazero-run: karmem-bridge's conformance runner for wazero. It owns
// running lowered core wasm modules on wazero (its compiler, or its
// interpreter with --interpreter) and reporting each run as one line.
//
// Usage:
//
//	karmem-wazero-run [--interpreter] --batch
//	karmem-wazero-run [--interpreter] MODULE_PATH EXPORT_NAME
//
// With --batch, each stdin line is MODULE_PATH<TAB>EXPORT_NAME and gets
// exactly one stdout line. Each line runs in a fresh runtime (the compilation
// cache is shared) with a fresh WASI: no args, no env, no preopens, empty
// stdin, the guest's stdout and stderr on this process's stderr, real clocks,
// real sleep and crypto/rand. After `_initialize` and `KarmemInit` (when
// exported), EXPORT_NAME is called with (0, 0) if it is (i32, i32) -> i64 (the
// Karmem ABI, the empty message) or with nothing if it is () -> (). The line:
//
//	ok              the call returned
//	trap: MESSAGE   the guest trapped (or the engine panicked while running it)
//	exit: CODE      the guest called proc_exit
//	error: MESSAGE  anything else: unreadable file, compile or instantiate
//	                failure (e.g. more than one memory), missing export, bad type
//
// The single-shot form prints the same line and exits 0 for `ok`, 1 otherwise.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

const usage = "usage: karmem-wazero-run [--interpreter] (--batch | MODULE_PATH EXPORT_NAME)"

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func main() {
	interpreter, batch, positional := false, false, []string{}
	for _, arg := range os.Args[1:] {
		switch arg {
		case "--interpreter":
			interpreter = true
		case "--batch":
			batch = true
		default:
			positional = append(positional, arg)
		}
	}
	config := wazero.NewRuntimeConfigCompiler()
	if interpreter {
		config = wazero.NewRuntimeConfigInterpreter()
	}
	config = config.WithCompilationCache(wazero.NewCompilationCache())
	ctx := context.Background()

	switch {
	case batch && len(positional) == 0:
		scanner := bufio.NewScanner(os.Stdin)
		scanner.Buffer(make([]byte, 64*1024), 1<<20)
		for n := 1; scanner.Scan(); n++ {
			line := "error: malformed batch line, expected MODULE_PATH<TAB>EXPORT_NAME"
			if path, export, ok := strings.Cut(scanner.Text(), "\t"); ok {
				line = run(ctx, config, fmt.Sprintf("line-%d", n), path, export)
			}
			fmt.Println(line) // os.Stdout is unbuffered: each line goes out at once
		}
		if err := scanner.Err(); err != nil {
			fmt.Fprintln(os.Stderr, "karmem-wazero-run: reading stdin:", err)
			os.Exit(2)
		}
	case !batch && len(positional) == 2:
		line := run(ctx, config, "guest", positional[0], positional[1])
		fmt.Println(line)
		if line != "ok" {
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
}

// run runs one module's export in a fresh runtime and returns its result line.
func run(ctx context.Context, config wazero.RuntimeConfig, name, path, export string) (line string) {
	running := false // whether guest code runs: then an engine panic counts as a trap
	defer func() {
		if p := recover(); p != nil {
			kind := "error"
			if running {
				kind = "trap"
			}
			line = kind + ": wazero panicked: " + oneLine(fmt.Sprint(p))
		}
	}()

	binary, err := os.ReadFile(path)
	if err != nil {
		return "error: " + oneLine(err.Error())
	}
	r := wazero.NewRuntimeWithConfig(ctx, config)
	defer r.Close(ctx)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		return "error: wasi: " + oneLine(err.Error())
	}
	compiled, err := r.CompileModule(ctx, binary)
	if err != nil {
		return "error: compile: " + oneLine(err.Error())
	}
	moduleConfig := wazero.NewModuleConfig().
		WithName(name).
		WithStartFunctions(). // `_initialize` is called below, `_start` never
		WithStdout(os.Stderr).
		WithStderr(os.Stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	running = true // a wasm start function runs while instantiating
	module, err := r.InstantiateModule(ctx, compiled, moduleConfig)
	running = false
	if err != nil {
		return outcome(err, "error: instantiate: ")
	}

	// Check every type before running anything.
	target := module.ExportedFunction(export)
	if target == nil {
		return fmt.Sprintf("error: no exported function %q", export)
	}
	var args []uint64
	switch params, results := target.Definition().ParamTypes(), target.Definition().ResultTypes(); {
	case slices.Equal(params, []api.ValueType{i32, i32}) && slices.Equal(results, []api.ValueType{i64}):
		args = []uint64{0, 0} // the empty message
	case len(params) == 0 && len(results) == 0:
	default:
		return fmt.Sprintf("error: %q has type %s, expected (i32, i32) -> (i64) or () -> ()", export, typeOf(target))
	}
	inits := []struct {
		name    string
		results []api.ValueType
	}{{"_initialize", nil}, {"KarmemInit", []api.ValueType{i64}}}
	for _, init := range inits {
		f := module.ExportedFunction(init.name)
		if f == nil {
			continue
		}
		if len(f.Definition().ParamTypes()) != 0 || !slices.Equal(f.Definition().ResultTypes(), init.results) {
			return fmt.Sprintf("error: %q has type %s, expected () -> %s", init.name, typeOf(f), types(init.results))
		}
	}

	running = true
	for _, init := range inits {
		if f := module.ExportedFunction(init.name); f != nil {
			if _, err := f.Call(ctx); err != nil {
				return outcome(err, "trap: "+init.name+": ")
			}
		}
	}
	if _, err := target.Call(ctx, args...); err != nil {
		return outcome(err, "trap: ")
	}
	return "ok"
}

// outcome is `exit: CODE` for proc_exit, else prefix and err's first line
// (a wasm trap's message is followed by its stack trace).
func outcome(err error, prefix string) string {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return fmt.Sprintf("exit: %d", exit.ExitCode())
	}
	return prefix + oneLine(err.Error())
}

func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(first)
}

func typeOf(f api.Function) string {
	return types(f.Definition().ParamTypes()) + " -> " + types(f.Definition().ResultTypes())
}

func types(ts []api.ValueType) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = api.ValueTypeName(t)
	}
	return "(" + strings.Join(names, ", ") + ")"
}
