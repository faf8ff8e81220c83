//! Stubs for the WASI 0.2 interfaces a preview1 host cannot serve.
//!
//! Owns: deciding, from the component's own WIT, what each such import does
//! when the host grants no such capability ([`plan_stubs`]), replacing the
//! imports of a lowered module with those behaviours ([`apply_stubs`]), and
//! recording the plan of imports kept by `--wasi passthrough` in the
//! `karmem:wasi-stubs` custom section, so `run --stub-missing` serves them
//! the same way ([`record_stubs`], [`stub_missing_imports`]).
//!
//! The behaviour follows wasmtime with networking disabled: a function
//! returning a `result` whose error type has a "denied" case returns that
//! case (`access-denied` for sockets, `permanent-resolver-failure` for name
//! lookups, `HTTP-request-denied` for http, else `not-permitted`,
//! `not-supported`, `unsupported`); a function without parameters returning
//! a handle (`instance-network`) returns a handle that grants nothing;
//! dropping a resource does nothing; everything else writes
//! `<import> called: ... not available` to stderr (fd 2) and traps.
//!
//! Does not own: which imports are uncovered (`super::classify_import`),
//! linking the shim (`wasi_link.rs`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail, ensure};
use walrus::ir::{BinaryOp, MemArg, StoreKind};
use walrus::{FunctionId, LocalId, MemoryId, Module, ValType};
use wit_parser::abi::AbiVariant;
use wit_parser::{Handle, Int, Resolve, SizeAlign, Type, TypeDefKind, WorldId, WorldItem};

use super::{PREVIEW1_MODULE, WasiImport, classify_import};

/// The custom section holding the plan of the imports `--wasi passthrough` kept.
pub const STUBS_SECTION: &str = "karmem:wasi-stubs";

/// What one stubbed import does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubAction {
    /// Nothing (a `[resource-drop]`: the host never handed out a resource
    /// that could hold anything).
    Nothing,
    /// Returns this flat value: a handle that grants nothing, or the
    /// discriminant of a flat `result` (`1`, `err`).
    Return(i64),
    /// Writes these `(offset, width in bytes, value)` at the return pointer
    /// (the last parameter) and returns: an `err` in canonical layout.
    Write(Vec<(u32, u8, u64)>),
    /// Writes the message to stderr, then traps.
    Trap(String),
}

/// The action of every function (and resource drop) of the component's
/// imported `wasi:` interfaces, by core import name `module#field`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StubPlan {
    pub actions: BTreeMap<String, StubAction>,
}

/// Plans the stubs for every `wasi:` interface `world` imports (the
/// uncovered ones are picked when applied).
pub fn plan_stubs(resolve: &Resolve, world: WorldId) -> Result<StubPlan> {
    let mut sizes = SizeAlign::default();
    sizes.fill(resolve);
    let mut plan = StubPlan::default();
    let world = resolve.worlds.get(world).context("the component's world is missing")?;
    for item in world.imports.values() {
        let WorldItem::Interface { id, .. } = item else { continue };
        let Some(name) = resolve.id_of(*id) else { continue };
        if !name.starts_with("wasi:") {
            continue;
        }
        let interface = resolve.interfaces.get(*id).context("an imported interface is missing")?;
        let unversioned = name.split_once('@').map_or(name.as_str(), |(path, _)| path);
        for (type_name, ty) in &interface.types {
            let def = resolve.types.get(*ty).context("a type is missing")?;
            if matches!(def.kind, TypeDefKind::Resource) {
                plan.actions.insert(format!("{name}#[resource-drop]{type_name}"), StubAction::Nothing);
            }
        }
        for func in interface.functions.values() {
            let import = format!("{name}#{}", func.name);
            let action = plan_function(resolve, &sizes, unversioned, func)
                .with_context(|| format!("failed to plan a stub for `{import}`"))?
                .unwrap_or_else(|| {
                    StubAction::Trap(format!(
                        "`{import}` called: `{unversioned}` is not available on this preview1 host \
                         (karmem-bridge linked a stub)\n"
                    ))
                });
            plan.actions.insert(import, action);
        }
    }
    Ok(plan)
}

/// The error cases a host without the capability answers with, best first.
fn denied_cases(interface: &str) -> &'static [&'static str] {
    if interface == "wasi:sockets/ip-name-lookup" {
        &["permanent-resolver-failure", "access-denied"]
    } else {
        &["access-denied", "HTTP-request-denied", "not-permitted", "not-supported", "unsupported"]
    }
}

fn plan_function(
    resolve: &Resolve,
    sizes: &SizeAlign,
    interface: &str,
    func: &wit_parser::Function,
) -> Result<Option<StubAction>> {
    let Some(result) = func.result else { return Ok(None) };
    let signature = resolve.wasm_signature(AbiVariant::GuestImport, func);
    match &resolved(resolve, result)? {
        Some(TypeDefKind::Result(result_type)) => {
            let Some(error) = result_type.err else { return Ok(None) };
            let Some((tag, case)) = denied_case(resolve, error, denied_cases(interface))? else {
                return Ok(None);
            };
            if !signature.retptr {
                // Only a `result` without payloads is flat: its discriminant.
                return Ok(Some(StubAction::Return(1)));
            }
            let payload = sizes.payload_offset(Int::U8, [result_type.ok.as_ref(), Some(&error)]).size_wasm32();
            let offset = u32::try_from(payload).context("a payload offset past 4 GiB")?;
            Ok(Some(StubAction::Write(vec![(0, 1, 1), (offset, int_width(tag), case)])))
        }
        Some(TypeDefKind::Handle(Handle::Own(_))) if func.params.is_empty() => Ok(Some(StubAction::Return(1))),
        _ => Ok(None),
    }
}

/// The definition `ty` names, through type aliases (`None` for primitives).
fn resolved(resolve: &Resolve, mut ty: Type) -> Result<Option<TypeDefKind>> {
    loop {
        let Type::Id(id) = ty else { return Ok(None) };
        let def = resolve.types.get(id).context("a type is missing")?;
        match &def.kind {
            TypeDefKind::Type(inner) => ty = *inner,
            other => return Ok(Some(other.clone())),
        }
    }
}

/// The first of `wanted` among `error`'s payload-less cases: its tag size and index.
fn denied_case(resolve: &Resolve, error: Type, wanted: &[&str]) -> Result<Option<(Int, u64)>> {
    Ok(match resolved(resolve, error)? {
        Some(TypeDefKind::Enum(e)) => {
            let cases: Vec<Option<String>> = e.cases.iter().map(|case| Some(case.name.clone())).collect();
            pick(e.tag(), &cases, wanted)
        }
        Some(TypeDefKind::Variant(v)) => {
            let cases: Vec<Option<String>> =
                v.cases.iter().map(|case| case.ty.is_none().then(|| case.name.clone())).collect();
            pick(v.tag(), &cases, wanted)
        }
        _ => None,
    })
}

fn pick(tag: Int, cases: &[Option<String>], wanted: &[&str]) -> Option<(Int, u64)> {
    wanted.iter().find_map(|name| {
        cases.iter().position(|case| case.as_deref() == Some(*name)).map(|index| (tag, index as u64))
    })
}

fn int_width(tag: Int) -> u8 {
    match tag {
        Int::U8 => 1,
        Int::U16 => 2,
        Int::U32 => 4,
        Int::U64 => 8,
    }
}

/// Replaces every import of `module` that is a `wasi:` function a preview1
/// host cannot serve (`Uncovered`) with its planned stub. Returns the
/// stubbed imports (`module#field`). An uncovered import the plan does not
/// describe is refused, naming it.
pub fn apply_stubs(module: &mut Module, plan: &StubPlan) -> Result<Vec<String>> {
    let mut targets: Vec<(FunctionId, String, StubAction)> = Vec::new();
    for import in module.imports.iter() {
        let walrus::ImportKind::Function(func) = import.kind else { continue };
        let (plain, _) = karmem_partition::split_module_memory(&import.module);
        if !matches!(classify_import(plain, &import.name)?, WasiImport::Uncovered { .. }) {
            continue;
        }
        let name = format!("{}#{}", import.module, import.name);
        let action = plan.actions.get(&format!("{plain}#{}", import.name)).cloned().with_context(|| {
            format!(
                "WASI import `{name}` is not available on preview1 hosts and the component's WIT does not describe \
                 it, so no stub can be made; `--wasi passthrough` keeps it as an import"
            )
        })?;
        targets.push((func, name, action));
    }
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let memory = default_memory(module);
    let needs_stderr = targets.iter().any(|(_, _, action)| matches!(action, StubAction::Trap(_)));
    let fd_write = match (needs_stderr, memory) {
        (true, Some(_)) => Some(fd_write_import(module)?),
        _ => None,
    };
    let mut stubbed = Vec::new();
    for (func, name, action) in targets {
        let (import_module, _) = name.split_once('#').context("an import name without `#`")?;
        let memory = match karmem_partition::split_module_memory(import_module).1 {
            Some(index) => Some(
                module
                    .memories
                    .iter()
                    .nth(index as usize)
                    .map(|m| m.id())
                    .with_context(|| format!("`{name}` names memory {index}, which the module does not have"))?,
            ),
            None => memory,
        };
        stub_one(module, func, &name, &action, memory, fd_write)?;
        stubbed.push(name);
    }
    Ok(stubbed)
}

/// The interfaces of stubbed imports, without versions, sorted.
pub fn stubbed_interfaces(stubbed: &[String]) -> Vec<String> {
    let set: BTreeSet<String> = stubbed
        .iter()
        .filter_map(|name| name.split_once('#'))
        .map(|(module, _)| karmem_partition::split_module_memory(module).0)
        .map(|module| module.split_once('@').map_or(module, |(path, _)| path).to_string())
        .collect();
    set.into_iter().collect()
}

fn default_memory(module: &Module) -> Option<MemoryId> {
    module
        .exports
        .iter()
        .find_map(|export| match export.item {
            walrus::ExportItem::Memory(memory) if export.name == "memory" => Some(memory),
            _ => None,
        })
        .or_else(|| module.memories.iter().next().map(|memory| memory.id()))
}

fn fd_write_import(module: &mut Module) -> Result<FunctionId> {
    if let Ok(func) = module.imports.get_func(PREVIEW1_MODULE, "fd_write") {
        let ty = module.types.get(module.funcs.get(func).ty());
        ensure!(
            ty.params() == [ValType::I32; 4] && ty.results() == [ValType::I32],
            "`{PREVIEW1_MODULE}#fd_write` is imported with a wrong type"
        );
        return Ok(func);
    }
    let ty = module.types.add(&[ValType::I32; 4], &[ValType::I32]);
    Ok(module.add_import_func(PREVIEW1_MODULE, "fd_write", ty).0)
}

fn stub_one(
    module: &mut Module,
    func: FunctionId,
    name: &str,
    action: &StubAction,
    memory: Option<MemoryId>,
    fd_write: Option<FunctionId>,
) -> Result<()> {
    let ty = module.types.get(module.funcs.get(func).ty());
    let (params, results) = (ty.params().to_vec(), ty.results().to_vec());
    match action {
        StubAction::Nothing => ensure!(results.is_empty(), "`{name}` returns values; its stub returns none"),
        StubAction::Return(_) => ensure!(
            matches!(results.as_slice(), [ValType::I32] | [ValType::I64]),
            "`{name}` has results {results:?}; its stub returns one integer"
        ),
        StubAction::Write(_) => ensure!(
            results.is_empty() && params.last() == Some(&ValType::I32) && memory.is_some(),
            "`{name}` has type {params:?} -> {results:?}; its stub writes through a return pointer"
        ),
        StubAction::Trap(_) => {}
    }
    // The page address of a trap's message.
    let base: LocalId = module.locals.add(ValType::I32);
    module
        .replace_imported_func(func, |(body, args)| match action {
            StubAction::Nothing => {}
            StubAction::Return(value) => {
                if results == [ValType::I64] {
                    body.i64_const(*value);
                } else {
                    body.i32_const(*value as i32);
                }
            }
            StubAction::Write(writes) => {
                let (Some(memory), Some(retptr)) = (memory, args.last()) else {
                    body.unreachable();
                    return;
                };
                for (offset, width, value) in writes {
                    body.local_get(*retptr);
                    let (kind, align) = match width {
                        1 => (StoreKind::I64_8 { atomic: false }, 0),
                        2 => (StoreKind::I64_16 { atomic: false }, 1),
                        4 => (StoreKind::I64_32 { atomic: false }, 2),
                        _ => (StoreKind::I64 { atomic: false }, 3),
                    };
                    body.i64_const(*value as i64).store(memory, kind, MemArg { align, offset: u64::from(*offset) });
                }
            }
            StubAction::Trap(message) => {
                if let (Some(memory), Some(fd_write)) = (memory, fd_write) {
                    write_stderr(body, memory, fd_write, base, message.as_bytes());
                }
                body.unreachable();
            }
        })
        .map_err(|error| anyhow::anyhow!("{error:#}"))
        .with_context(|| format!("failed to stub `{name}`"))?;
    Ok(())
}

/// Takes a fresh page (`memory.grow`, so nothing of the guest's is
/// overwritten), puts `message` and one iovec there and writes it to fd 2.
/// Without a page to take, nothing is written.
fn write_stderr(
    body: &mut walrus::InstrSeqBuilder<'_>,
    memory: MemoryId,
    fd_write: FunctionId,
    base: LocalId,
    message: &[u8],
) {
    const TEXT: u64 = 16;
    body.i32_const(1).memory_grow(memory).local_tee(base).i32_const(-1).binop(BinaryOp::I32Eq).if_else(
        None,
        |failed| {
            failed.unreachable();
        },
        |_| {},
    );
    body.local_get(base).i32_const(16).binop(BinaryOp::I32Shl).local_set(base);
    for (index, chunk) in message.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        for (slot, byte) in word.iter_mut().zip(chunk) {
            *slot = *byte;
        }
        body.local_get(base).i64_const(i64::from_le_bytes(word)).store(
            memory,
            StoreKind::I64 { atomic: false },
            MemArg { align: 3, offset: TEXT + 8 * index as u64 },
        );
    }
    // iovec { buf = base + 16, len } at base; bytes written at base + 8
    body.local_get(base)
        .local_get(base)
        .i32_const(TEXT as i32)
        .binop(BinaryOp::I32Add)
        .store(memory, StoreKind::I32 { atomic: false }, MemArg { align: 2, offset: 0 });
    body.local_get(base).i32_const(message.len() as i32).store(
        memory,
        StoreKind::I32 { atomic: false },
        MemArg { align: 2, offset: 4 },
    );
    body.i32_const(2)
        .local_get(base)
        .i32_const(1)
        .local_get(base)
        .i32_const(8)
        .binop(BinaryOp::I32Add)
        .call(fd_write)
        .drop();
}

/// Records in [`STUBS_SECTION`] the plan of the imports `module` still has
/// that are uncovered `wasi:` functions (`--wasi passthrough`), so
/// [`stub_missing_imports`] can serve them later as the default would have.
pub fn record_stubs(module: &mut Module, plan: &StubPlan) -> Result<usize> {
    let mut kept = serde_json::Map::new();
    for import in module.imports.iter() {
        if !matches!(import.kind, walrus::ImportKind::Function(_)) {
            continue;
        }
        let (plain, _) = karmem_partition::split_module_memory(&import.module);
        if !matches!(classify_import(plain, &import.name)?, WasiImport::Uncovered { .. }) {
            continue;
        }
        if let Some(action) = plan.actions.get(&format!("{plain}#{}", import.name)) {
            kept.insert(format!("{plain}#{}", import.name), action_to_json(action));
        }
    }
    let count = kept.len();
    if count > 0 {
        let data = serde_json::to_vec(&serde_json::Value::Object(kept)).context("failed to write the stub plan")?;
        module.customs.add(walrus::RawCustomSection { name: STUBS_SECTION.to_string(), data });
    }
    Ok(count)
}

/// The plan recorded in `module`'s [`STUBS_SECTION`] (empty without one).
pub fn read_recorded_stubs(module: &Module) -> Result<StubPlan> {
    let mut plan = StubPlan::default();
    for (_, section) in module.customs.iter() {
        if section.name() != STUBS_SECTION {
            continue;
        }
        let data = section.data(&Default::default());
        let value: serde_json::Value = serde_json::from_slice(&data).context("`karmem:wasi-stubs` is not JSON")?;
        let object = value.as_object().context("`karmem:wasi-stubs` is not a JSON object")?;
        for (name, action) in object {
            plan.actions.insert(name.clone(), action_from_json(action).with_context(|| format!("stub of `{name}`"))?);
        }
    }
    Ok(plan)
}

/// `run --stub-missing`: the module with its kept (`--wasi passthrough`)
/// `wasi:` imports that a preview1 host cannot serve replaced by the
/// stubs `lower` recorded for them; one it recorded nothing for traps with
/// a message naming it. Returns the module and the stubbed imports.
pub fn stub_missing_imports(wasm: &[u8]) -> Result<(Vec<u8>, Vec<String>)> {
    let mut module = Module::from_buffer(wasm).context("failed to read the module to stub its missing imports")?;
    let mut plan = read_recorded_stubs(&module)?;
    for import in module.imports.iter() {
        if !matches!(import.kind, walrus::ImportKind::Function(_)) {
            continue;
        }
        let (plain, _) = karmem_partition::split_module_memory(&import.module);
        if matches!(classify_import(plain, &import.name)?, WasiImport::Uncovered { .. }) {
            let name = format!("{plain}#{}", import.name);
            let interface = plain.split_once('@').map_or(plain, |(path, _)| path);
            let message = format!("`{name}` called: `{interface}` is not available on this host (stubbed by `run --stub-missing`)\n");
            plan.actions.entry(name).or_insert(StubAction::Trap(message));
        }
    }
    let stubbed = apply_stubs(&mut module, &plan)?;
    Ok((module.emit_wasm(), stubbed))
}

fn action_to_json(action: &StubAction) -> serde_json::Value {
    use serde_json::json;
    match action {
        StubAction::Nothing => json!({ "do": "nothing" }),
        StubAction::Return(value) => json!({ "do": "return", "value": value }),
        StubAction::Write(writes) => json!({ "do": "write", "writes": writes }),
        StubAction::Trap(message) => json!({ "do": "trap", "message": message }),
    }
}

fn action_from_json(value: &serde_json::Value) -> Result<StubAction> {
    Ok(match value.get("do").and_then(serde_json::Value::as_str) {
        Some("nothing") => StubAction::Nothing,
        Some("return") => StubAction::Return(value.get("value").and_then(serde_json::Value::as_i64).context("no value")?),
        Some("write") => {
            let writes = value.get("writes").and_then(serde_json::Value::as_array).context("no writes")?;
            let mut out = Vec::new();
            for write in writes {
                let fields = write.as_array().context("a write is not [offset, width, value]")?;
                let field = |index: usize| fields.get(index).and_then(serde_json::Value::as_u64).context("a write field");
                out.push((u32::try_from(field(0)?)?, u8::try_from(field(1)?)?, field(2)?));
            }
            StubAction::Write(out)
        }
        Some("trap") => StubAction::Trap(
            value.get("message").and_then(serde_json::Value::as_str).context("no message")?.to_string(),
        ),
        other => bail!("unknown stub action {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIT: &str = r#"
        package wasi:http@0.2.0;
        interface types {
          variant error-code { DNS-timeout, HTTP-request-denied, internal-error(option<string>) }
          resource fields { constructor(); has: func(name: string) -> bool; }
        }
        interface outgoing-handler {
          use types.{error-code, fields};
          handle: func(request: fields) -> result<u64, error-code>;
          ping: func() -> result;
        }
        world w { import outgoing-handler; }
    "#;

    fn plan() -> Result<StubPlan> {
        let mut resolve = Resolve::default();
        let package = resolve.push_str("http.wit", WIT)?;
        let world = resolve.select_world(&[package], Some("w"))?;
        plan_stubs(&resolve, world)
    }

    #[test]
    fn errors_follow_the_canonical_layout() -> Result<()> {
        let plan = plan()?;
        // `result<u64, error-code>`: discriminant at 0, payload at 8; the
        // variant's tag (u8) is `HTTP-request-denied`, case 1.
        assert_eq!(
            plan.actions.get("wasi:http/outgoing-handler@0.2.0#handle"),
            Some(&StubAction::Write(vec![(0, 1, 1), (8, 1, 1)]))
        );
        Ok(())
    }

    #[test]
    fn other_functions_trap_drops_do_nothing_and_handles_are_granted() -> Result<()> {
        let plan = plan()?;
        // `result` without an error type to say "denied": a trap naming it.
        let ping = plan.actions.get("wasi:http/outgoing-handler@0.2.0#ping");
        assert!(matches!(ping, Some(StubAction::Trap(m)) if m.contains("`wasi:http/outgoing-handler@0.2.0#ping`")), "{ping:?}");
        let has = plan.actions.get("wasi:http/types@0.2.0#[method]fields.has");
        assert!(matches!(has, Some(StubAction::Trap(m)) if m.contains("`wasi:http/types`")), "{has:?}");
        assert_eq!(plan.actions.get("wasi:http/types@0.2.0#[resource-drop]fields"), Some(&StubAction::Nothing));
        assert_eq!(plan.actions.get("wasi:http/types@0.2.0#[constructor]fields"), Some(&StubAction::Return(1)));
        Ok(())
    }

    #[test]
    fn recorded_plans_read_back() -> Result<()> {
        let plan = plan()?;
        for action in plan.actions.values() {
            assert_eq!(&action_from_json(&action_to_json(action))?, action);
        }
        Ok(())
    }

    #[test]
    fn stubbed_interfaces_drop_versions_and_memories() {
        let names = [
            "wasi:sockets/tcp@0.2.9#[method]tcp-socket.subscribe".to_string(),
            "wasi:sockets/tcp@0.2.9#[resource-drop]tcp-socket".to_string(),
            "wasi:http/types@0.2.0#[constructor]fields".to_string(),
        ];
        assert_eq!(stubbed_interfaces(&names), ["wasi:http/types", "wasi:sockets/tcp"]);
    }
}
