//! The pass on hand-written multi-memory modules, run on wasmi: values
//! agree with the multi-memory original, an access past a partition traps,
//! growth stops at the quota with -1, and preview1 calls see rebased
//! pointers.

// Test helpers build and run modules they wrote themselves (clippy.toml
// exempts only `#[test]` functions).
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::collections::BTreeMap;

use karmem_partition::{Layout, plan, run};

/// A module with memory 0 (the identity), memory 1 and memory 2, each with
/// accessors; `extra` is spliced into the module.
fn three_memories(extra: &str) -> Vec<u8> {
    let (imports, extra): (Vec<&str>, Vec<&str>) = extra.lines().partition(|l| l.trim_start().starts_with("(import"));
    let (imports, extra) = (imports.join("\n"), extra.join("\n"));
    wat::parse_str(format!(
        r#"(module
          {imports}
          (memory $m0 1) (memory $m1 2) (memory $m2 1)
          (export "memory" (memory $m0))
          (data (memory $m1) (i32.const 16) "one")
          (data (memory $m2) (i32.const 16) "two")
          (func (export "load0") (param i32) (result i32) (i32.load8_u $m0 (local.get 0)))
          (func (export "load1") (param i32) (result i32) (i32.load8_u $m1 (local.get 0)))
          (func (export "load2") (param i32) (result i32) (i32.load8_u $m2 (local.get 0)))
          (func (export "store1") (param i32 i32) (i32.store $m1 offset=4 (local.get 0) (local.get 1)))
          (func (export "load1_32") (param i32) (result i32) (i32.load $m1 offset=4 (local.get 0)))
          (func (export "store2_64") (param i32 i64) (i64.store $m2 (local.get 0) (local.get 1)))
          (func (export "load2_64") (param i32) (result i64) (i64.load $m2 (local.get 0)))
          (func (export "size0") (result i32) (memory.size $m0))
          (func (export "size1") (result i32) (memory.size $m1))
          (func (export "size2") (result i32) (memory.size $m2))
          (func (export "grow0") (param i32) (result i32) (memory.grow $m0 (local.get 0)))
          (func (export "grow1") (param i32) (result i32) (memory.grow $m1 (local.get 0)))
          (func (export "grow2") (param i32) (result i32) (memory.grow $m2 (local.get 0)))
          (func (export "copy21") (param i32 i32 i32) (memory.copy $m2 $m1 (local.get 0) (local.get 1) (local.get 2)))
          (func (export "fill2") (param i32 i32 i32) (memory.fill $m2 (local.get 0) (local.get 1) (local.get 2)))
          {extra})"#
    ))
    .unwrap()
}

fn owners() -> Vec<String> {
    vec!["edge".into(), "big".into(), "small".into()]
}

fn layout(module: &[u8], quotas: &[(&str, u64)]) -> Layout {
    let quotas: BTreeMap<String, u64> = quotas.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    plan(module, &owners(), 0, &quotas).unwrap()
}

struct Guest {
    store: wasmi::Store<Vec<u8>>,
    instance: wasmi::Instance,
}

impl Guest {
    fn new(wasm: &[u8]) -> Self {
        let engine = wasmi::Engine::default();
        let module = wasmi::Module::new(&engine, wasm).unwrap();
        let mut linker = wasmi::Linker::<Vec<u8>>::new(&engine);
        // fd_write that records what it writes, reading the one memory at
        // the (physical) addresses it is given.
        linker
            .func_wrap(
                "wasi_snapshot_preview1",
                "fd_write",
                |mut caller: wasmi::Caller<'_, Vec<u8>>, _fd: i32, iovs: i32, count: i32, written: i32| -> i32 {
                    let memory = caller.get_export("memory").unwrap().into_memory().unwrap();
                    let mut total = 0u32;
                    let mut bytes = Vec::new();
                    for i in 0..count as u32 {
                        let mut iov = [0u8; 8];
                        memory.read(&caller, (iovs as u32 + 8 * i) as usize, &mut iov).unwrap();
                        let ptr = u32::from_le_bytes(iov[..4].try_into().unwrap());
                        let len = u32::from_le_bytes(iov[4..].try_into().unwrap());
                        let mut buf = vec![0u8; len as usize];
                        memory.read(&caller, ptr as usize, &mut buf).unwrap();
                        bytes.extend(buf);
                        total += len;
                    }
                    memory.write(&mut caller, written as usize, &total.to_le_bytes()).unwrap();
                    caller.data_mut().extend(bytes);
                    0
                },
            )
            .unwrap();
        // args: two arguments, "ab" and "c", laid out as a host does.
        linker
            .func_wrap("wasi_snapshot_preview1", "args_sizes_get", |mut caller: wasmi::Caller<'_, Vec<u8>>, argc: i32, size: i32| -> i32 {
                let memory = caller.get_export("memory").unwrap().into_memory().unwrap();
                memory.write(&mut caller, argc as usize, &2u32.to_le_bytes()).unwrap();
                memory.write(&mut caller, size as usize, &5u32.to_le_bytes()).unwrap();
                0
            })
            .unwrap();
        linker
            .func_wrap("wasi_snapshot_preview1", "args_get", |mut caller: wasmi::Caller<'_, Vec<u8>>, argv: i32, buf: i32| -> i32 {
                let memory = caller.get_export("memory").unwrap().into_memory().unwrap();
                memory.write(&mut caller, buf as usize, b"ab\0c\0").unwrap();
                memory.write(&mut caller, argv as usize, &(buf as u32).to_le_bytes()).unwrap();
                memory.write(&mut caller, argv as usize + 4, &(buf as u32 + 3).to_le_bytes()).unwrap();
                0
            })
            .unwrap();
        let mut store = wasmi::Store::new(&engine, Vec::new());
        let instance = linker.instantiate_and_start(&mut store, &module).unwrap();
        Self { store, instance }
    }

    fn call<P: wasmi::WasmParams, R: wasmi::WasmResults>(&mut self, name: &str, params: P) -> Result<R, wasmi::Error> {
        let f = self.instance.get_typed_func::<P, R>(&self.store, name).unwrap();
        f.call(&mut self.store, params)
    }
}

#[test]
fn values_agree_and_the_layout_is_one_memory() {
    let original = three_memories("");
    let layout = layout(&original, &[]);
    // the largest initial memory (`big`, 2 pages) is open-ended and last
    assert_eq!(layout.last, 1);
    assert_eq!(layout.partition(1).unwrap().quota_pages, None);
    let one = run(&original, &layout).unwrap();
    let mut g = Guest::new(&one);
    assert_eq!(g.call::<i32, i32>("load1", 16).unwrap(), i32::from(b'o'));
    assert_eq!(g.call::<i32, i32>("load2", 16).unwrap(), i32::from(b't'));
    assert_eq!(g.call::<i32, i32>("load0", 16).unwrap(), 0);
    g.call::<(i32, i32), ()>("store1", (100, 0x1234_5678)).unwrap();
    assert_eq!(g.call::<i32, i32>("load1_32", 100).unwrap(), 0x1234_5678);
    g.call::<(i32, i64), ()>("store2_64", (200, -5)).unwrap();
    assert_eq!(g.call::<i32, i64>("load2_64", 200).unwrap(), -5);
    assert_eq!(g.call::<(), i32>("size0", ()).unwrap(), 1);
    assert_eq!(g.call::<(), i32>("size1", ()).unwrap(), 2);
    assert_eq!(g.call::<(), i32>("size2", ()).unwrap(), 1);
    // copy "one" from memory 1 into memory 2, then fill
    g.call::<(i32, i32, i32), ()>("copy21", (300, 16, 3)).unwrap();
    assert_eq!(g.call::<i32, i32>("load2", 301).unwrap(), i32::from(b'n'));
    g.call::<(i32, i32, i32), ()>("fill2", (400, 7, 10)).unwrap();
    assert_eq!(g.call::<i32, i32>("load2", 409).unwrap(), 7);
    assert_eq!(g.call::<i32, i32>("load2", 410).unwrap(), 0);
}

#[test]
fn addressing_past_a_partition_traps() {
    let original = three_memories("");
    let one = run(&original, &layout(&original, &[])).unwrap();
    let mut g = Guest::new(&one);
    // memory 2 has one page: its last byte loads, the next traps
    assert_eq!(g.call::<i32, i32>("load2", 65_535).unwrap(), 0);
    assert!(g.call::<i32, i32>("load2", 65_536).is_err());
    // a wide load straddling the end traps too
    assert!(g.call::<i32, i64>("load2_64", 65_530).is_err());
    // memory 0 (the identity partition, checked in code)
    assert!(g.call::<i32, i32>("load0", 65_536).is_err());
    // the open-ended partition: the engine's own check
    assert_eq!(g.call::<i32, i32>("load1", 2 * 65_536 - 1).unwrap(), 0);
    assert!(g.call::<i32, i32>("load1", 2 * 65_536).is_err());
    assert!(g.call::<i32, i32>("load1", -1).is_err());
    // bulk operations out of range trap
    assert!(g.call::<(i32, i32, i32), ()>("fill2", (65_530, 1, 7)).is_err());
    assert!(g.call::<(i32, i32, i32), ()>("copy21", (0, 2 * 65_536 - 2, 3)).is_err());
}

#[test]
fn static_offsets_are_checked_with_the_address() {
    let original = three_memories(
        r#"(func (export "far2") (param i32) (result i32) (i32.load $m2 offset=65532 (local.get 0)))
           (func (export "wide2") (param i32) (result i64) (i64.load $m2 offset=8 (local.get 0)))"#,
    );
    let one = run(&original, &layout(&original, &[])).unwrap();
    let mut g = Guest::new(&one);
    assert_eq!(g.call::<i32, i32>("far2", 0).unwrap(), 0);
    assert!(g.call::<i32, i32>("far2", 1).is_err());
    assert!(g.call::<i32, i32>("far2", 4).is_err());
    // a + offset wraps past 4 GiB: still a trap
    assert!(g.call::<i32, i32>("far2", -4).is_err());
    assert!(g.call::<i32, i32>("far2", -65532).is_err());
    assert_eq!(g.call::<i32, i64>("wide2", 65_520).unwrap(), 0);
    assert!(g.call::<i32, i64>("wide2", 65_521).is_err());
}

#[test]
fn growth_stops_at_the_quota_with_minus_one() {
    let original = three_memories("");
    // `small` may grow to 3 pages (192 KiB)
    let one = run(&original, &layout(&original, &[("small", 3 * 65_536)])).unwrap();
    let mut g = Guest::new(&one);
    assert!(g.call::<i32, i32>("load2", 65_536).is_err());
    assert_eq!(g.call::<i32, i32>("grow2", 1).unwrap(), 1);
    assert_eq!(g.call::<i32, i32>("load2", 65_536).unwrap(), 0);
    assert_eq!(g.call::<i32, i32>("grow2", 2).unwrap(), -1);
    assert_eq!(g.call::<i32, i32>("grow2", 1).unwrap(), 2);
    assert_eq!(g.call::<(), i32>("size2", ()).unwrap(), 3);
    assert_eq!(g.call::<i32, i32>("grow2", 1).unwrap(), -1);
    assert_eq!(g.call::<i32, i32>("grow2", -1).unwrap(), -1);
    assert!(g.call::<i32, i32>("load2", 3 * 65_536).is_err());
    // the open-ended partition grows the memory itself
    assert_eq!(g.call::<i32, i32>("grow1", 3).unwrap(), 2);
    assert_eq!(g.call::<(), i32>("size1", ()).unwrap(), 5);
    assert_eq!(g.call::<i32, i32>("load1", 5 * 65_536 - 1).unwrap(), 0);
    assert!(g.call::<i32, i32>("load1", 5 * 65_536).is_err());
    // the edge's default quota
    assert_eq!(g.call::<i32, i32>("grow0", 2000).unwrap(), -1);
    assert_eq!(g.call::<i32, i32>("grow0", 1).unwrap(), 1);
}

/// A body keeps its limits in locals: they must be re-read after a
/// `memory.grow` in the same body and after a call that grows, or the new
/// pages would trap.
#[test]
fn growth_inside_a_body_is_seen_by_its_later_accesses() {
    let original = three_memories(
        r#"(func $grow2_by_one (drop (memory.grow $m2 (i32.const 1))))
           (func (export "grow_then_store2") (param i32) (result i32)
             (drop (memory.grow $m2 (i32.const 1)))
             (i32.store $m2 (local.get 0) (i32.const 42))
             (i32.load $m2 (local.get 0)))
           (func (export "call_grow_then_load2") (param i32) (result i32)
             (drop (i32.load $m2 (i32.const 0)))
             (call $grow2_by_one)
             (i32.load $m2 (local.get 0)))"#,
    );
    let one = run(&original, &layout(&original, &[("small", 4 * 65_536)])).unwrap();
    let mut g = Guest::new(&one);
    assert!(g.call::<i32, i32>("load2", 65_536).is_err());
    assert_eq!(g.call::<i32, i32>("grow_then_store2", 65_536).unwrap(), 42);
    assert!(g.call::<i32, i32>("load2", 2 * 65_536).is_err());
    assert_eq!(g.call::<i32, i32>("call_grow_then_load2", 2 * 65_536).unwrap(), 0);
    assert_eq!(g.call::<(), i32>("size2", ()).unwrap(), 3);
}

#[test]
fn preview1_calls_see_rebased_pointers() {
    let original = three_memories(
        r#"
        (import "wasi_snapshot_preview1!memory2" "fd_write" (func $write2 (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1!memory2" "args_get" (func $args2 (param i32 i32) (result i32)))
        (data (memory $m2) (i32.const 64) "hello, world")
        (func (export "write2") (result i32)
          ;; two iovecs at 128: "hello" and ", world"
          (i32.store $m2 (i32.const 128) (i32.const 64)) (i32.store $m2 (i32.const 132) (i32.const 5))
          (i32.store $m2 (i32.const 136) (i32.const 69)) (i32.store $m2 (i32.const 140) (i32.const 7))
          (drop (call $write2 (i32.const 1) (i32.const 128) (i32.const 2) (i32.const 160)))
          (i32.load $m2 (i32.const 160)))
        (func (export "write2_bad") (result i32)
          (i32.store $m2 (i32.const 128) (i32.const 65530)) (i32.store $m2 (i32.const 132) (i32.const 100))
          (call $write2 (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 160)))
        (func (export "args2") (result i32)
          (drop (call $args2 (i32.const 512) (i32.const 600)))
          ;; argv[1] points at "c"
          (i32.load8_u $m2 (i32.load $m2 (i32.const 516))))
        "#,
    );
    let one = run(&original, &layout(&original, &[])).unwrap();
    let mut g = Guest::new(&one);
    assert_eq!(g.call::<(), i32>("write2", ()).unwrap(), 12);
    assert_eq!(g.store.data().as_slice(), b"hello, world");
    // a buffer running past the partition traps before the host sees it
    assert!(g.call::<(), i32>("write2_bad", ()).is_err());
    assert_eq!(g.call::<(), i32>("args2", ()).unwrap(), i32::from(b'c'));
}

#[test]
fn refusals_name_what() {
    let one_memory = wat::parse_str("(module (memory 1))").unwrap();
    let error = plan(&one_memory, &["a".into()], 0, &BTreeMap::new()).unwrap_err();
    assert!(error.to_string().contains("nothing to partition"), "{error}");
    let original = three_memories("");
    let quotas: BTreeMap<String, u64> = [("nobody".to_string(), 65_536)].into();
    let error = plan(&original, &owners(), 0, &quotas).unwrap_err();
    assert!(error.to_string().contains("nobody"), "{error}");
    let atomic = wat::parse_str(
        "(module (memory 1) (memory 1) (export \"memory\" (memory 0)) \
         (func (result i32) (i32.atomic.load 1 (i32.const 0))))",
    )
    .unwrap();
    let layout = plan(&atomic, &["a".into(), "b".into()], 0, &BTreeMap::new()).unwrap();
    let error = run(&atomic, &layout).unwrap_err();
    assert!(format!("{error:#}").contains("atomic"), "{error:#}");
    let unknown = wat::parse_str(
        "(module (import \"wasi_snapshot_preview1\" \"fd_frobnicate\" (func (param i32))) \
         (memory 1) (memory 1) (export \"memory\" (memory 0)))",
    )
    .unwrap();
    let layout = plan(&unknown, &["a".into(), "b".into()], 0, &BTreeMap::new()).unwrap();
    let error = run(&unknown, &layout).unwrap_err();
    assert!(format!("{error:#}").contains("fd_frobnicate"), "{error:#}");
}
