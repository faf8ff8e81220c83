package temperature_test

// Go host call overhead (docs/BENCHMARKS.md, "Go host"): TemperatureBatch
// with 10 and 10,000 readings through generated code, on the lowered
// benchmark component (KARMEM_TEMPERATURE_WASM, written by hosts/go/bench.sh).

import (
	"context"
	"os"
	"testing"

	"karmem-bridge/hosts/go/examples/temperature"
	"karmem-bridge/hosts/go/host"
)

func instance(b *testing.B) *host.Instance {
	path := os.Getenv("KARMEM_TEMPERATURE_WASM")
	if path == "" {
		b.Skip("KARMEM_TEMPERATURE_WASM is not set (hosts/go/bench.sh sets it)")
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rt, err := host.NewRuntime(ctx, host.Config{CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(ctx) })
	mod, err := rt.Load(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	inst, err := mod.Instantiate(ctx, host.Options{Layout: temperature.KarmemLayout})
	if err != nil {
		b.Fatal(err)
	}
	return inst
}

func bench(b *testing.B, n int) {
	inst := instance(b)
	args := temperature.TemperatureAnalyzeParams{Readings: make([]temperature.Reading, n)}
	for i := range args.Readings {
		args.Readings[i] = temperature.Reading{Timestamp: 1_700_000_000 + int64(i)*60, Value: 15 + float32(i%200)/10}
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := temperature.CallTemperatureAnalyze(ctx, inst, args)
		if err != nil || res.Ret.Max < res.Ret.Min {
			b.Fatal(res, err)
		}
	}
}

func BenchmarkTemperatureBatch10(b *testing.B)    { bench(b, 10) }
func BenchmarkTemperatureBatch10000(b *testing.B) { bench(b, 10000) }
