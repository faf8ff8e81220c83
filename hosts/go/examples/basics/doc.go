// Package basics is `karmem-bridge gen go` output for the `basics` fixture
// (basics.km: the lowered module's `karmem:idl`, as the host kit writes it),
// used by the README's example (example_test.go): regenerate with
//
//	karmem-bridge gen go hosts/go/examples/basics/basics.km -o hosts/go/examples/basics/basics.go
package basics
