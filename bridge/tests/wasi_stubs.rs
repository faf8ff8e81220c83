//! WASI interfaces a preview1 host cannot serve (docs/LOWERING.md, `## WASI`):
//! by default `lower` links them to stubs behaving like a host that grants
//! no such capability, and says so in one warning line; `--wasi deny`
//! refuses them; `--wasi passthrough` keeps them, and `run --stub-missing`
//! serves what it kept the same way.
//!
//! - a small component built here (a core module and its WIT, as
//!   wit-bindgen would) imports `wasi:sockets`: `create-tcp-socket` returns
//!   `err(access-denied)` in canonical layout, `instance-network` a handle,
//!   a resource drop does nothing, and `[method]tcp-socket.is-listening`
//!   (no `result`) traps with a message naming the import;
//! - the componentize-py fixture (which always imports `wasi:sockets`)
//!   lowers with default flags, and its `add` and `echo` answer on wasmtime
//!   with the component model off (`run`).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test helpers: a fixture or a child process that cannot be set up fails the test")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A subset of `wasi:sockets@0.2.0`, with the real case order of `error-code`.
const SOCKETS_WIT: &str = r#"
package wasi:sockets@0.2.0;

interface network {
  resource network;
  enum error-code { unknown, access-denied, not-supported, invalid-argument }
  enum ip-address-family { ipv4, ipv6 }
}

interface instance-network {
  use network.{network};
  instance-network: func() -> network;
}

interface tcp {
  use network.{network, error-code, ip-address-family};
  resource tcp-socket {
    is-listening: func() -> bool;
    keep-alive-count: func() -> result<u32, error-code>;
  }
}

interface tcp-create-socket {
  use network.{error-code, ip-address-family};
  use tcp.{tcp-socket};
  create-tcp-socket: func(address-family: ip-address-family) -> result<tcp-socket, error-code>;
}
"#;

const PROBE_WIT: &str = r#"
package test:probe;

world probe {
  import wasi:sockets/instance-network@0.2.0;
  import wasi:sockets/tcp@0.2.0;
  import wasi:sockets/tcp-create-socket@0.2.0;
  /// `(discriminant << 8) | error-code` of `create-tcp-socket(ipv4)`.
  export connect: func() -> u32;
  /// `(discriminant << 8) | error-code` of `keep-alive-count` on handle 1 (a `result`: an error).
  export keep-alive: func() -> u32;
  /// The handle `instance-network` returns (dropped before returning).
  export network: func() -> u32;
  /// `is-listening` on handle 1: no `result` to fail with, so it traps.
  export listening: func() -> bool;
}
"#;

const PROBE: &str = r#"(module
  (import "wasi:sockets/instance-network@0.2.0" "instance-network" (func $net (result i32)))
  (import "wasi:sockets/network@0.2.0" "[resource-drop]network" (func $drop-net (param i32)))
  (import "wasi:sockets/tcp-create-socket@0.2.0" "create-tcp-socket" (func $create (param i32 i32)))
  (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.is-listening" (func $listening (param i32) (result i32)))
  (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.keep-alive-count" (func $keep-alive (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "connect") (result i32)
    (i64.store (i32.const 16) (i64.const -1))
    (call $create (i32.const 0) (i32.const 16))
    (i32.or (i32.shl (i32.load8_u (i32.const 16)) (i32.const 8)) (i32.load8_u (i32.const 20))))
  (func (export "keep-alive") (result i32)
    (i64.store (i32.const 32) (i64.const -1))
    (call $keep-alive (i32.const 1) (i32.const 32))
    (i32.or (i32.shl (i32.load8_u (i32.const 32)) (i32.const 8)) (i32.load8_u (i32.const 36))))
  (func (export "network") (result i32) (local $h i32)
    (local.set $h (call $net))
    (call $drop-net (local.get $h))
    (local.get $h))
  (func (export "listening") (result i32) (call $listening (i32.const 1))))"#;

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("scratch dir")).path()
}

/// The probe component, written once.
fn probe() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let mut resolve = wit_parser::Resolve::default();
        resolve.push_str("sockets.wit", SOCKETS_WIT).unwrap();
        let package = resolve.push_str("probe.wit", PROBE_WIT).unwrap();
        let world = resolve.select_world(&[package], Some("probe")).unwrap();
        let mut module = wat::parse_str(PROBE).unwrap();
        wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)
            .unwrap();
        let component = wit_component::ComponentEncoder::default().module(&module).unwrap().validate(true).encode().unwrap();
        let path = scratch().join("probe.wasm");
        std::fs::write(&path, component).unwrap();
        path
    })
    .clone()
}

fn bridge() -> Command {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_karmem-bridge"));
    command.env("KARMEM_CACHE_DIR", CACHE.get_or_init(|| tempfile::tempdir().expect("cache tempdir")).path());
    command
}

fn lower(input: &Path, out: &str, extra: &[&str]) -> (Output, PathBuf) {
    let path = scratch().join(out);
    let output = bridge().arg("lower").arg(input).arg("-o").arg(&path).args(extra).output().expect("run lower");
    (output, path)
}

fn run(module: &Path, extra: &[&str], calls: &[&str]) -> Output {
    let mut command = bridge();
    command.arg("run").arg(module).args(extra);
    for call in calls {
        command.arg("--invoke").arg(call);
    }
    command.output().expect("run karmem-bridge run")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of `stderr` that are warnings.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|line| line.starts_with("warning:")).collect()
}

#[test]
fn uncovered_sockets_are_stubbed_by_default() {
    let (lowered, module) = lower(&probe(), "probe.default.wasm", &[]);
    let stderr = text(&lowered.stderr);
    assert!(lowered.status.success(), "{stderr}");
    let warned = warnings(&stderr);
    assert_eq!(warned.len(), 1, "one warning line: {stderr}");
    let warning = warned.first().unwrap();
    for interface in ["wasi:sockets/instance-network", "wasi:sockets/network", "wasi:sockets/tcp", "wasi:sockets/tcp-create-socket"] {
        assert!(warning.contains(interface), "{warning}");
    }
    assert!(!warning.contains("@0.2.0"), "interfaces are listed without versions: {warning}");

    // err(access-denied): discriminant 1, error-code 1; a handle for the network.
    let answered = run(&module, &[], &["connect()", "keep-alive()", "network()"]);
    assert!(answered.status.success(), "{}", text(&answered.stderr));
    assert_eq!(text(&answered.stdout), "257\n257\n1\n");

    let trapped = run(&module, &[], &["listening()"]);
    assert!(!trapped.status.success(), "is-listening must trap");
    let stderr = text(&trapped.stderr);
    assert!(stderr.contains("`wasi:sockets/tcp@0.2.0#[method]tcp-socket.is-listening` called"), "{stderr}");
    assert!(stderr.contains("not available"), "{stderr}");
}

#[test]
fn deny_refuses_and_shim_stubs() {
    let (denied, path) = lower(&probe(), "probe.deny.wasm", &["--wasi", "deny"]);
    let stderr = text(&denied.stderr);
    assert!(!denied.status.success(), "`--wasi deny` must refuse sockets");
    assert_eq!(denied.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("WASI interface `wasi:sockets/"), "{stderr}");
    assert!(!path.exists(), "no output after a refusal");

    let (shim, module) = lower(&probe(), "probe.shim.wasm", &["--wasi", "shim"]);
    assert!(shim.status.success(), "{}", text(&shim.stderr));
    assert_eq!(warnings(&text(&shim.stderr)).len(), 1, "{}", text(&shim.stderr));
    assert_eq!(text(&run(&module, &[], &["connect()"]).stdout), "257\n");
}

#[test]
fn passthrough_output_runs_with_stub_missing() {
    let (kept, module) = lower(&probe(), "probe.passthrough.wasm", &["--wasi", "passthrough"]);
    let stderr = text(&kept.stderr);
    assert!(kept.status.success(), "{stderr}");
    assert!(warnings(&stderr).is_empty(), "passthrough stubs nothing: {stderr}");

    let missing = run(&module, &[], &["connect()"]);
    assert!(!missing.status.success(), "without `--stub-missing` the kept imports are missing");

    let served = run(&module, &["--stub-missing"], &["connect()", "network()"]);
    assert!(served.status.success(), "{}", text(&served.stderr));
    assert_eq!(text(&served.stdout), "257\n1\n");
    let trapped = run(&module, &["--stub-missing"], &["listening()"]);
    assert!(!trapped.status.success());
    let stderr = text(&trapped.stderr);
    assert!(stderr.contains("`wasi:sockets/tcp@0.2.0#[method]tcp-socket.is-listening` called"), "{stderr}");
}

/// componentize-py 0.25.1 always imports `wasi:sockets` (its libc is
/// wasip2's); it lowers with default flags in one lowering and answers on
/// wasmtime with the component model off.
#[test]
fn componentize_py_lowers_by_default() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/lowering/componentize-py/component.wasm");
    let (lowered, module) = lower(&fixture, "componentize-py.wasm", &[]);
    let stderr = text(&lowered.stderr);
    assert!(lowered.status.success(), "{stderr}");
    assert!(!stderr.contains("note: the preview1 adapter is kept"), "libc.so is not the preview1 adapter: {stderr}");
    let warned = warnings(&stderr);
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(warned.first().unwrap().contains("wasi:sockets/tcp"), "{stderr}");
    let answered = run(&module, &[], &["add(3, 4)", "add(4294967295, 2)", r#"echo("héllo, wörld")"#]);
    assert!(answered.status.success(), "{}", text(&answered.stderr));
    assert_eq!(text(&answered.stdout), "7\n1\n\"héllo, wörld\"\n");
}
