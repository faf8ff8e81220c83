package host_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"karmem-bridge/hosts/go/host"
	"karmem-bridge/hosts/go/karmem"
)

// guest loads a kit module and its layout.
func guest(t *testing.T, rt *host.Runtime, name string) (*host.Module, *karmem.Layout) {
	kit := os.Getenv("KARMEM_HOST_KIT")
	if kit == "" {
		t.Skip("KARMEM_HOST_KIT is not set")
	}
	wasm, err := os.ReadFile(filepath.Join(kit, name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(kit, name+".layout.json"))
	if err != nil {
		t.Fatal(err)
	}
	layout, err := karmem.ParseLayout(string(text))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Load(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	return mod, layout
}

// total is a counter instance's running total.
func total(t *testing.T, c *host.Instance) string {
	v, err := c.CallValues(context.Background(), "counter", "get")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(v...)
}

// The linked fixtures (client imports karmem:fixtures/counter, counter
// exports it with a running total per instance) under every pattern.
func TestPatterns(t *testing.T) {
	ctx := context.Background()
	rt, err := host.NewRuntime(ctx, host.Config{CacheDir: cacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	clientMod, clientLayout := guest(t, rt, "linked-client")
	counterMod, counterLayout := guest(t, rt, "linked-counter")
	counter := func() *host.Instance {
		c, err := counterMod.Instantiate(ctx, host.Options{Layout: counterLayout})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	client := func(link *host.Link) *host.Instance {
		c, err := clientMod.Instantiate(ctx, host.Options{Layout: clientLayout, Links: map[string]*host.Link{"counter": link}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	bump := func(c *host.Instance, amount, times int) {
		if _, err := c.CallValues(ctx, "client", "bump", amount, times); err != nil {
			t.Fatal(err)
		}
	}

	// direct
	c1 := counter()
	direct := client(&host.Link{Pattern: host.Direct, Guests: []*host.Instance{c1}})
	bump(direct, 5, 2)
	if got := total(t, c1); got != "10" {
		t.Fatalf("direct: counter total %s, want 10", got)
	}

	// fanout: every exporter gets the call; the observer sees each result
	c2 := counter()
	var seen [][]byte
	fan := client(&host.Link{Pattern: host.Fanout, Guests: []*host.Instance{c1, c2},
		OnFanout: func(_ string, results [][]byte, errs []error) {
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			seen = append(seen, results...)
		}})
	bump(fan, 1, 1)
	if a, b := total(t, c1), total(t, c2); a != "11" || b != "1" || len(seen) != 2 {
		t.Fatalf("fanout: totals %s and %s, %d results seen", a, b, len(seen))
	}

	// singleton: two importers share one exporter's state
	single := &host.Link{Pattern: host.Singleton, Guests: []*host.Instance{counter()}}
	bump(client(single), 3, 1)
	bump(client(single), 4, 1)
	if got := total(t, single.Guests[0]); got != "7" {
		t.Fatalf("singleton: total %s, want 7", got)
	}

	// pool: calls from several goroutines spread over the members
	pool := &host.Link{Pattern: host.Pool, Guests: []*host.Instance{counter(), counter(), counter()}}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		importer := client(pool)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 25; k++ {
				if _, err := importer.CallValues(ctx, "client", "bump", 1, 1); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	sum := 0
	for _, m := range pool.Guests {
		var n int
		fmt.Sscan(total(t, m), &n)
		sum += n
	}
	if sum != 100 {
		t.Fatalf("pool: members' totals add up to %d, want 100", sum)
	}
}
