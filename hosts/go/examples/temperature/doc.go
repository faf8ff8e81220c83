// Package temperature is `karmem-bridge gen go` output for the TemperatureBatch
// benchmark guest (benches/guests, the paper's Figure 32 as a component),
// used by bench_test.go: regenerate with
//
//	karmem-bridge idl benches/guests/built/temperature-component.wasm -o hosts/go/examples/temperature/temperature.km
//	karmem-bridge gen go hosts/go/examples/temperature/temperature.km -o hosts/go/examples/temperature/temperature.go
package temperature
