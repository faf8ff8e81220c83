package host

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// Pattern is how an imported interface is served by other guests (paper
// §4.3.2, docs/RUNTIME.md "Linking guests by pattern"); the values are the
// descriptor's pattern byte.
type Pattern uint8

const (
	// Direct: one exporter instance serves this importer.
	Direct Pattern = 0
	// Fanout: every exporter gets each call in order; the importer receives
	// the first successful result, OnFanout sees them all.
	Fanout Pattern = 1
	// Singleton: one exporter instance shared by every importer (its calls
	// are serialised; its state persists between importers).
	Singleton Pattern = 2
	// Pool: calls go to an idle member, round robin, from any goroutine.
	Pool Pattern = 3
)

// Link serves an imported interface from exporter instances.
type Link struct {
	Pattern Pattern
	// Guests: one for Direct and Singleton, every exporter for Fanout, the
	// members for Pool.
	Guests []*Instance
	// OnFanout, if set, sees every exporter's result (or error) of a fanout call.
	OnFanout func(function string, results [][]byte, errs []error)
	next     atomic.Uint32
}

// exportName is the export serving the importer's `iface`/`name` in `g`:
// the exporter's interface of the same WIT identity (descriptor fields
// wit_package, wit_interface, wit_version) or, without one, the same name.
func exportName(importer *Instance, g *Instance, iface, name string) (string, error) {
	var want *Interface
	for j := range importer.Imports {
		if importer.Imports[j].Name == iface {
			want = &importer.Imports[j]
		}
	}
	for _, d := range g.Exports {
		same := d.Name == iface
		if want != nil && want.WitInterface != "" {
			same = d.WitPackage == want.WitPackage && d.WitInterface == want.WitInterface && d.WitVersion == want.WitVersion
		}
		if same {
			return d.Name + "." + name, nil
		}
	}
	return "", fmt.Errorf("karmem host: no linked guest exports the interface of import `karmem:%s`", iface)
}

// serve runs one call of import `iface`/`name` of `importer` by the link's pattern.
func (l *Link) serve(ctx context.Context, importer *Instance, iface, name string, args []byte) ([]byte, error) {
	if len(l.Guests) == 0 {
		return nil, fmt.Errorf("karmem host: the link of `karmem:%s` has no guests", iface)
	}
	call := func(g *Instance) ([]byte, error) {
		export, err := exportName(importer, g, iface, name)
		if err != nil {
			return nil, err
		}
		if resource, ok := strings.CutPrefix(name, "[resource-drop]"); ok {
			exporter, _, _ := strings.Cut(export, ".")
			return nil, g.Drop(ctx, exporter, resource, binary.LittleEndian.Uint32(args))
		}
		return g.Call(ctx, export, args)
	}
	drop := strings.HasPrefix(name, "[resource-drop]")
	switch l.Pattern {
	case Direct, Singleton:
		return call(l.Guests[0])
	case Fanout:
		if drop && len(l.Guests) > 1 {
			return nil, fmt.Errorf("karmem host: `karmem:%s`/`%s`: under fanout the owner of a handle is unknown", iface, name)
		}
		results, errs := make([][]byte, len(l.Guests)), make([]error, len(l.Guests))
		first := -1
		for j, g := range l.Guests {
			results[j], errs[j] = call(g)
			if errs[j] == nil && first < 0 {
				first = j
			}
		}
		if l.OnFanout != nil {
			l.OnFanout(iface+"."+name, results, errs)
		}
		if first < 0 {
			return nil, fmt.Errorf("karmem host: every exporter of `karmem:%s` failed: %w", iface, errors.Join(errs...))
		}
		return results[first], nil
	case Pool:
		if drop && len(l.Guests) > 1 {
			return nil, fmt.Errorf("karmem host: `karmem:%s`/`%s`: in a pool the owner of a handle is unknown", iface, name)
		}
		n := uint32(len(l.Guests))
		start := l.next.Add(1)
		for k := uint32(0); k < n; k++ {
			g := l.Guests[(start+k)%n]
			if g.mu.TryLock() {
				g.mu.Unlock()
				return call(g)
			}
		}
		return call(l.Guests[start%n])
	}
	return nil, fmt.Errorf("karmem host: unknown pattern %d", l.Pattern)
}
