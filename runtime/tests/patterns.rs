//! Guests linked to guests by pattern, on real components: the fixture
//! guests `counter` (exports `karmem:fixtures/counter`, a running total per
//! instance) and `client` (imports it; exports functions that call it), from
//! `fixtures/components/linked/`, lowered here with the Karmem ABI. One
//! lowered guest's export serves the other's import: composition without the
//! component model. Instances are told apart by their totals.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, anyhow, ensure};
use karmem_format::Value;
use karmem_runtime::compose::{Composition, FanoutCall};
use karmem_runtime::invoke::{Session, SessionOptions};
use karmem_runtime::link::Pattern;
use karmem_runtime::{Access, Runtime, RuntimeConfig};

/// The interface memory overlay of the shared-memory tests: the client
/// writes `checksum`'s argument message into `input`, consumers read it.
const MEMORY_OVERLAY: &str = "pattern counter=fanout\n\
    memory counter.input=import:write,export:read,4\n\
    place counter.checksum.data=input\n";

/// Lowers `fixtures/components/linked/<guest>.core.wasm` the way
/// `karmem-bridge lower` does, with an optional overlay on its IDL (what
/// `karmem-bridge idl --overlay` applies: patterns and shared memories).
fn lower(guest: &str, overlay: Option<&str>) -> Result<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/components/linked")
        .join(format!("{guest}.core.wasm"));
    let component =
        std::fs::read(&path).with_context(|| format!("reading `{}`", path.display()))?;
    let loaded = karmem_wit_import::load_wasm(&component, None)?;
    let mut imported = karmem_wit_import::import_world(&loaded.resolve, loaded.world)?;
    if let Some(text) = overlay {
        karmem_wit_import::Overlay::parse_file(text)?.apply(&mut imported)?;
    }
    let world = karmem_adapters::abi::World::from_imported(&loaded.resolve, loaded.world, imported)?;
    let options = karmem_core_lowering::Options {
        abi: karmem_core_lowering::Abi::Canonical,
        multi_memory: false,
        idl: Some(world.idl.clone()),
    };
    let canonical = karmem_core_lowering::lower(&component, &options)?;
    karmem_adapters::abi::karmem_abi(
        &canonical,
        &world,
        &karmem_adapters::abi::Options::default(),
    )
}

struct Lowered {
    counter: Vec<u8>,
    client: Vec<u8>,
    counter_shared: Vec<u8>,
    client_shared: Vec<u8>,
}

fn lowered() -> Result<&'static Lowered> {
    static LOWERED: OnceLock<std::result::Result<Lowered, String>> = OnceLock::new();
    LOWERED
        .get_or_init(|| {
            let build = || -> Result<Lowered> {
                Ok(Lowered {
                    counter: lower("counter", None)?,
                    client: lower("client", None)?,
                    counter_shared: lower("counter", Some(MEMORY_OVERLAY))?,
                    client_shared: lower("client", Some(MEMORY_OVERLAY))?,
                })
            };
            build().map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("lowering the fixtures failed: {e}"))
}

/// A runtime whose module cache is shared by the tests of this binary, so
/// each lowered module compiles once.
fn runtime() -> Result<Arc<Runtime>> {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = match CACHE.get() {
        Some(dir) => dir,
        None => {
            let _ = CACHE.set(tempfile::tempdir()?);
            CACHE.get().context("cache dir")?
        }
    };
    Ok(Arc::new(Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    })?))
}

fn args(fields: &[(&str, Value)]) -> Value {
    Value::Record(
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
    )
}

fn ret(value: Value) -> Result<u64> {
    match value.field("ret") {
        Some(Value::U64(v)) => Ok(*v),
        other => Err(anyhow!("expected `ret: u64`, got {other:?}")),
    }
}

fn bump(client: &mut Session, amount: u32, times: u32) -> Result<u64> {
    ret(client.invoke(
        "client",
        "bump",
        &args(&[("amount", Value::U32(amount)), ("times", Value::U32(times))]),
    )?)
}

fn read(client: &mut Session) -> Result<u64> {
    ret(client.invoke("client", "read", &args(&[]))?)
}

fn send(client: &mut Session, len: u32) -> Result<u64> {
    ret(client.invoke("client", "send", &args(&[("len", Value::U32(len))]))?)
}

fn get(counter: &Arc<Mutex<Session>>) -> Result<u64> {
    let mut counter = counter.lock().map_err(|_| anyhow!("poisoned"))?;
    ret(counter.invoke("counter", "get", &args(&[]))?)
}

fn incr(counter: &Arc<Mutex<Session>>, amount: u32) -> Result<u64> {
    let mut counter = counter.lock().map_err(|_| anyhow!("poisoned"))?;
    ret(counter.invoke("counter", "incr", &args(&[("amount", Value::U32(amount))]))?)
}

/// The checksum the counter computes over the client's `send(len)` bytes
/// (for a counter whose total is 0).
fn expected_checksum(len: u32) -> u64 {
    (0..len).map(|i| u64::from(i % 251)).sum()
}

#[test]
fn direct_gives_each_importer_its_own_exporter() -> Result<()> {
    let fixtures = lowered()?;
    let composition = Composition::new(runtime()?);
    let counter = composition.add("counter", &fixtures.counter, SessionOptions::default())?;
    let client = composition.add("client", &fixtures.client, SessionOptions::default())?;
    // WIT declares no pattern: the lowered module says `direct`.
    assert_eq!(composition.pattern_of(client, "counter")?, Pattern::Direct);
    assert!(
        composition.choose("counter", client).is_err(),
        "the client does not export `counter`"
    );
    composition.choose("counter", counter)?;

    let mut first = composition.instantiate(client)?;
    let mut second = composition.instantiate(client)?;
    assert_eq!(bump(&mut first, 1, 3)?, 3);
    assert_eq!(
        bump(&mut second, 1, 2)?,
        2,
        "the second importer has its own counter"
    );
    assert_eq!(read(&mut first)?, 3);
    let exporters = first.exporters("counter");
    assert_eq!(exporters.len(), 1);
    assert_eq!(
        get(&exporters[0])?,
        3,
        "the host sees the exporter the importer used"
    );
    Ok(())
}

#[test]
fn singleton_shares_one_exporter_and_its_state_between_importers() -> Result<()> {
    let fixtures = lowered()?;
    let composition = Composition::new(runtime()?);
    composition.add("counter", &fixtures.counter, SessionOptions::default())?;
    let client = composition.add("client", &fixtures.client, SessionOptions::default())?;
    // The host's choice at link time overrides the `direct` the WIT gave.
    composition.set_pattern("counter", Pattern::Singleton)?;

    let mut first = composition.instantiate(client)?;
    let mut second = composition.instantiate(client)?;
    assert_eq!(bump(&mut first, 1, 3)?, 3);
    assert_eq!(
        bump(&mut second, 1, 2)?,
        5,
        "the state persists from one importer to the other"
    );
    assert_eq!(read(&mut first)?, 5);
    let singleton = composition.singleton("counter").context("the singleton")?;
    assert_eq!(incr(&singleton, 10)?, 15, "the host shares it too");
    assert_eq!(read(&mut second)?, 15);
    assert!(Arc::ptr_eq(
        &first.exporters("counter")[0],
        &second.exporters("counter")[0]
    ));
    Ok(())
}

#[test]
fn fanout_reaches_every_exporter_and_collects_results_in_order() -> Result<()> {
    let fixtures = lowered()?;
    let composition = Composition::new(runtime()?);
    for name in ["a", "b", "c"] {
        composition.add(name, &fixtures.counter, SessionOptions::default())?;
    }
    let client = composition.add("client", &fixtures.client, SessionOptions::default())?;
    composition.set_pattern("counter", Pattern::Fanout)?;
    type Calls = Vec<Vec<Result<u64, String>>>;
    let seen: Arc<Mutex<Calls>> = Arc::default();
    let record = Arc::clone(&seen);
    composition.on_fanout(Arc::new(move |call: &FanoutCall<'_>| {
        assert_eq!((call.interface, call.function), ("counter", "incr"));
        let results = call
            .results
            .iter()
            .map(|r| r.clone().and_then(|v| ret(v).map_err(|e| e.to_string())))
            .collect();
        if let Ok(mut seen) = record.lock() {
            seen.push(results);
        }
    }))?;

    let mut importer = composition.instantiate(client)?;
    let consumers = importer.exporters("counter");
    assert_eq!(consumers.len(), 3);
    incr(&consumers[0], 10)?;
    incr(&consumers[1], 20)?;
    // One call reaches every exporter; the importer gets the first result.
    assert_eq!(bump(&mut importer, 1, 1)?, 11);
    let totals: Vec<u64> = consumers.iter().map(get).collect::<Result<_>>()?;
    assert_eq!(totals, [11, 21, 1]);
    let calls = seen.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    assert_eq!(
        calls,
        [vec![Ok(11), Ok(21), Ok(1)]],
        "results collected in registration order"
    );

    // A consumer that failed is poisoned and reported; the others still run.
    {
        let mut broken = consumers[1].lock().map_err(|_| anyhow!("poisoned"))?;
        let bad_header = [1, 2, 3, 4, 5, 6, 7, 8];
        assert!(
            broken.call_raw("counter", "incr", &bad_header).is_err(),
            "a malformed message traps"
        );
        assert!(broken.poisoned().is_some());
    }
    assert_eq!(bump(&mut importer, 1, 1)?, 12);
    let calls = seen.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    let last = calls.last().context("a second fanout call")?;
    assert_eq!(last.first(), Some(&Ok(12)));
    assert!(
        last.get(1).is_some_and(|r| r
            .as_ref()
            .is_err_and(|e| e.contains("unusable after an earlier failure"))),
        "{last:?}"
    );
    assert_eq!(last.get(2), Some(&Ok(2)));
    Ok(())
}

#[test]
fn a_pool_spreads_calls_over_its_members_from_several_threads() -> Result<()> {
    let fixtures = lowered()?;
    let composition = Composition::new(runtime()?);
    composition.add("counter", &fixtures.counter, SessionOptions::default())?;
    let client = composition.add("client", &fixtures.client, SessionOptions::default())?;
    let two = NonZeroUsize::new(2).context("two")?;
    composition.set_pattern("counter", Pattern::Pool { instances: two })?;

    // One thread, idle members: the calls alternate between the two.
    let mut importer = composition.instantiate(client)?;
    assert_eq!(
        bump(&mut importer, 1, 4)?,
        2,
        "four increments over two members"
    );

    // Four importers on four threads share the pool.
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let composition = composition.clone();
                scope.spawn(move || -> Result<u64> {
                    let mut importer = composition.instantiate(client)?;
                    bump(&mut importer, 1, 25)
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow!("a worker panicked"))??;
        }
        Ok(())
    })?;
    let pool = composition.pool("counter").context("the pool")?;
    assert_eq!(pool.size(), 2);
    let mut totals = Vec::new();
    pool.for_each(|member| {
        totals.push(ret(member.invoke("counter", "get", &args(&[]))?)?);
        Ok(())
    })?;
    assert_eq!(
        totals.iter().sum::<u64>(),
        104,
        "every call ran exactly once: {totals:?}"
    );
    assert_eq!(pool.replaced(), 0);
    Ok(())
}

/// Zero-copy fanout (paper §4.3.3): with the `input` memory declared by an
/// overlay (and the fanout pattern too: no host override here), the client
/// writes `checksum`'s argument message once into its `input` window, and
/// every consumer reads the same physical pages through its read-only
/// window. The host copies no argument bytes into any consumer.
#[test]
fn fanout_consumers_read_one_physical_copy_of_a_message() -> Result<()> {
    let fixtures = lowered()?;
    let len = 100_000u32;
    let mut copied_per_consumer = Vec::new();
    for (counter, client, shared) in [
        (&fixtures.counter, &fixtures.client, false),
        (&fixtures.counter_shared, &fixtures.client_shared, true),
    ] {
        let composition = Composition::new(runtime()?);
        for name in ["a", "b", "c"] {
            composition.add(name, counter, SessionOptions::default())?;
        }
        let client = composition.add("client", client, SessionOptions::default())?;
        if !shared {
            composition.set_pattern("counter", Pattern::Fanout)?;
        }
        assert_eq!(composition.pattern_of(client, "counter")?, Pattern::Fanout);
        let mut importer = composition.instantiate(client)?;
        let consumers = importer.exporters("counter");
        let before: Vec<u64> = consumers
            .iter()
            .map(|c| {
                c.lock()
                    .map(|c| c.host_bytes_written())
                    .map_err(|_| anyhow!("poisoned"))
            })
            .collect::<Result<_>>()?;
        assert_eq!(send(&mut importer, len)?, expected_checksum(len));
        let mut copied = Vec::new();
        for (consumer, before) in consumers.iter().zip(before) {
            let consumer = consumer.lock().map_err(|_| anyhow!("poisoned"))?;
            copied.push(consumer.host_bytes_written() - before);
        }
        copied_per_consumer.push(copied);
        if shared {
            let windows = importer.windows();
            ensure!(windows.len() == 1, "the importer maps `input`: {windows:?}");
            let window = &windows[0];
            assert_eq!(
                (window.region.name(), window.access, window.pages),
                ("input", Access::ReadWrite, 4)
            );
            for consumer in &consumers {
                let mut consumer = consumer.lock().map_err(|_| anyhow!("poisoned"))?;
                let theirs = consumer
                    .window_of(&window.region)
                    .context("the consumer maps the same region")?;
                assert_eq!(theirs.access, Access::Read);
                // The host refuses to write where the consumer may only read.
                let refused = consumer
                    .write_memory(theirs.offset, &[1])
                    .err()
                    .context("write refused")?;
                assert!(format!("{refused:#}").contains("read"), "{refused:#}");
            }
        }
    }
    let [copied, in_place] = copied_per_consumer.as_slice() else {
        anyhow::bail!("two runs")
    };
    assert!(
        copied.iter().all(|&bytes| bytes >= u64::from(len)),
        "without memories each consumer gets a copy: {copied:?}"
    );
    assert_eq!(
        in_place,
        &[0, 0, 0],
        "with the shared region no consumer gets a copy"
    );
    Ok(())
}

/// Pool members run concurrently, so they do not share windows: a message
/// the importer placed in its region is copied to the member.
#[test]
fn a_pool_copies_messages_placed_in_shared_memory() -> Result<()> {
    let fixtures = lowered()?;
    let composition = Composition::new(runtime()?);
    composition.add(
        "counter",
        &fixtures.counter_shared,
        SessionOptions::default(),
    )?;
    let client = composition.add("client", &fixtures.client_shared, SessionOptions::default())?;
    composition.set_pattern(
        "counter",
        Pattern::Pool {
            instances: NonZeroUsize::new(2).context("two")?,
        },
    )?;
    let mut importer = composition.instantiate(client)?;
    assert_eq!(send(&mut importer, 5000)?, expected_checksum(5000));
    assert!(
        importer.windows().is_empty(),
        "no window is shared with a pool"
    );
    Ok(())
}

#[test]
fn an_import_no_module_exports_traps_naming_it() -> Result<()> {
    let fixtures = lowered()?;
    let composition = Composition::new(runtime()?);
    let client = composition.add("client", &fixtures.client, SessionOptions::default())?;
    let mut importer = composition.instantiate(client)?;
    let error = bump(&mut importer, 1, 1).err().context("unserved")?;
    assert!(
        format!("{error:#}").contains("import `karmem:counter`/`incr` is not served"),
        "{error:#}"
    );
    Ok(())
}

/// A singleton shares its regions with its first importer only (importers
/// may run concurrently); later importers' messages are copied, and every
/// importer still reaches the same instance.
#[test]
fn a_singleton_shares_its_regions_with_one_importer() -> Result<()> {
    let fixtures = lowered()?;
    let composition = Composition::new(runtime()?);
    composition.add(
        "counter",
        &fixtures.counter_shared,
        SessionOptions::default(),
    )?;
    let client = composition.add("client", &fixtures.client_shared, SessionOptions::default())?;
    composition.set_pattern("counter", Pattern::Singleton)?;
    let mut first = composition.instantiate(client)?;
    let mut second = composition.instantiate(client)?;
    assert_eq!(first.windows().len(), 1);
    assert!(second.windows().is_empty());
    assert_eq!(bump(&mut first, 7, 1)?, 7);
    assert_eq!(send(&mut first, 3000)?, expected_checksum(3000) + 7);
    assert_eq!(send(&mut second, 3000)?, expected_checksum(3000) + 7);
    Ok(())
}

/// Modules that import from each other are refused before anything runs.
#[test]
fn modules_importing_from_each_other_are_refused() -> Result<()> {
    let composition = Composition::new(runtime()?);
    let module = |import: &str, export: &str| -> Result<Vec<u8>> {
        let import = karmem_contract::import_module(import);
        Ok(wat::parse_str(format!(
            r#"(module (import "{import}" "f" (func (param i32 i32) (result i64)))
                 (memory (export "memory") 1)
                 (func (export "{export}.f") (param i32 i32) (result i64) (i64.const 0)))"#
        ))?)
    };
    let ping = composition.add("ping", &module("pong", "ping")?, SessionOptions::default())?;
    composition.add("pong", &module("ping", "pong")?, SessionOptions::default())?;
    let error = composition.instantiate(ping).err().context("a cycle")?;
    assert!(
        format!("{error:#}")
            .contains("modules import from each other in a cycle: `ping` -> `pong` -> `ping`"),
        "{error:#}"
    );
    Ok(())
}

/// A session with interface memories, driven by the host: the host maps the
/// `input` region at the offset the handshake reported (read-only for the
/// exporter), writes the argument message once into the region, and the
/// guest decodes it in place; the host copies nothing into the guest.
#[test]
fn a_session_reads_a_host_message_in_place_from_its_region() -> Result<()> {
    let fixtures = lowered()?;
    let runtime = runtime()?;
    let mut session = Session::new(
        &runtime,
        &fixtures.counter_shared,
        &SessionOptions::default(),
    )?;
    let memory = session
        .exported("counter")
        .and_then(|i| i.memories.first())
        .cloned()
        .context("the descriptor lists `input`")?;
    assert_eq!(
        (memory.name.as_str(), memory.access, memory.pages),
        ("input", Access::Read, 4)
    );
    let region = karmem_runtime::SharedRegion::new("input", memory.pages)?;
    session.map_shared(&memory.placement(&region)?)?;

    let data: Vec<Value> = (0..5000u32).map(|i| Value::U8((i % 251) as u8)).collect();
    let layout = Arc::clone(&session.abi().context("abi")?.layout);
    let layout = layout.as_ref();
    let message = karmem_format::value::encode_params(
        layout,
        "counter",
        "checksum",
        &args(&[("data", Value::List(data))]),
    )
    .map_err(|e| anyhow!("{e}"))?;
    region.write(0, message.as_slice())?;
    let before = session.host_bytes_written();
    let len = u32::try_from(message.as_slice().len())?;
    let result = session.call_in_place("counter", "checksum", memory.offset, len)?;
    assert_eq!(
        session.host_bytes_written(),
        before,
        "no copy into the guest"
    );
    let value = karmem_format::value::decode(
        layout,
        layout
            .function("counter", "checksum")
            .context("shape")?
            .results,
        &result,
        &karmem_format::Limits::default(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    assert_eq!(ret(value)?, expected_checksum(5000));
    // The guest's window is read-only: the host may not write there either.
    assert!(session.write_memory(memory.offset, &[0]).is_err());
    Ok(())
}
