//! `xtask host-kit OUT_DIR`: what a Karmem host in another language (the Go
//! host, the JavaScript host) needs to reproduce every fixture without Rust.
//!
//! Owns: choosing the fixtures that run as one lowered module (default
//! `lower` options, one memory), lowering them, and writing for each
//! `NAME.wasm`, `NAME.km` (its `karmem:idl` section), `NAME.layout.json`
//! (that IDL laid out, `karmem_format::gen_ts::layout_json`) and `NAME.cases.json`
//! (its invocations with their expected outcomes as JSON, docs/HOSTS.md
//! "Values as JSON"), plus `index.json` listing them with the WASI
//! environment the reference runner gives every fixture.
//!
//! The expected outcomes are the reference runner's (wasmtime's component
//! runtime) in full, checked line for line against the committed
//! `fixtures/NAME.expected` transcript first, so that values the transcript
//! shows abbreviated (long strings, big lists) are exact in the kit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use karmem_adapters::abi::World;
use karmem_contract::IDL_SECTION;
use karmem_format::Value;
use karmem_format::layout::{Kind, Layout, TypeId};
use karmem_format::wave::{ValueType, is_tuple_shaped, kebab};
use karmem_tests::harness::{Completion, Effect, Outcome, Runner, render_transcript};
use karmem_tests::invocation::{Action, Arg, Call, Invocation, split_arguments};
use karmem_tests::reference::{FIXTURE_ARGS, FIXTURE_ENV, ReferenceRunner, SANDBOX_GUEST_PATH, SANDBOX_INPUT};
use karmem_tests::value::Value as TValue;
use karmem_wit_import::Side;
use serde_json::{Map, Value as Json, json};

/// Fixtures left out of the kit, with why. Every other fixture with
/// invocations is in it. (None today: the bump allocators of
/// `utf16-strings` and `latin1-utf16-strings` once were, until `lower` gave
/// such guests' Karmem edge a partition of its own, docs/ABI.md §10.)
const LEFT_OUT: [(&str, &str); 0] = [];

/// One fixture to put in the kit.
struct Source {
    name: String,
    /// Where it came from, relative to the checkout.
    origin: String,
    component: Vec<u8>,
    /// Its invocations and its committed transcript.
    invocations: PathBuf,
    expected: PathBuf,
    /// A toolchain fixture (`fixtures/toolchains/`): the reference runner
    /// traps the WASI interfaces it does not serve, which such a component
    /// imports without calling (StarlingMonkey's `wasi:http`).
    toolchain: bool,
}

/// A comma-separated list of `fixtures/toolchains/` directories (or `all`,
/// or `none`) the kit adds as `toolchain-<dir>`; unset: [`DEFAULT_TOOLCHAINS`].
const TOOLCHAINS_ENV: &str = "KARMEM_HOST_KIT_TOOLCHAINS";

/// The toolchain fixtures in the kit by default: every one whose default
/// lowering agrees with the reference (`DEFAULT_NOT_YET` in
/// `tests/tests/toolchains.rs` lists those that do not yet: none).
const DEFAULT_TOOLCHAINS: &str = "c-app,c-command,js-app,js-command,py-app,py-command,qjs-app";

/// Writes the kit into `out`, on a thread with room for the deep recursion
/// of compiling and lowering in a debug build.
pub fn host_kit(out: &Path) -> Result<()> {
    let out = out.to_path_buf();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || write_kit(&out))?
        .join()
        .map_err(|_| anyhow!("the host-kit thread panicked"))?
}

fn write_kit(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating `{}`", out.display()))?;
    let mut entries = Vec::new();
    for source in sources()? {
        if let Some((_, why)) = LEFT_OUT.iter().find(|(n, _)| *n == source.name) {
            eprintln!("host-kit: leaving out `{}`: {why}", source.name);
            continue;
        }
        let entry = write_fixture(out, &source).with_context(|| format!("fixture `{}` ({})", source.name, source.origin))?;
        eprintln!("host-kit: {} ({} cases)", source.name, entry.get("cases_count").and_then(Json::as_u64).unwrap_or(0));
        entries.push(entry);
    }
    let linked = write_linked(out)?;
    let env: Map<String, Json> = FIXTURE_ENV.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect();
    let index = json!({
        "kit": 1,
        "about": "karmem-bridge host kit: lowered fixtures, their KarmemIDL and their expected outcomes (docs/HOSTS.md)",
        "wasi": {
            "args": FIXTURE_ARGS,
            "env": env,
            "preopens": { SANDBOX_GUEST_PATH: { "input.txt": SANDBOX_INPUT } },
        },
        "fixtures": entries,
        "linked": linked,
    });
    write_json(&out.join("index.json"), &index)?;
    // the descriptors' own schema laid out, for hosts that decode
    // descriptors with their dynamic codec (docs/ABI.md §5)
    let (layout, _) = karmem_contract::descriptor_layout()?;
    std::fs::write(out.join("descriptor.layout.json"), karmem_format::gen_ts::layout_json(layout))
        .context("writing `descriptor.layout.json`")
}

/// The guests of `components/linked/` (an importer and its exporter, for
/// linking by pattern), lowered, with their IDL and layout; no cases.
fn write_linked(out: &Path) -> Result<Vec<Json>> {
    let dir = fixtures_dir().join("components").join("linked");
    let mut entries = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing `{}`", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.sort();
    for path in paths {
        let Some(stem) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".wasm")) else { continue };
        let guest = stem.split('.').next().unwrap_or(stem);
        let name = format!("linked-{guest}");
        let lowered = karmem_bridge::lower(&read(&path)?, &karmem_bridge::LowerOptions::default())
            .with_context(|| format!("lowering `{}`", path.display()))?;
        let idl = custom_section(&lowered.module, IDL_SECTION)?.with_context(|| format!("no `{IDL_SECTION}` section"))?;
        let idl = String::from_utf8(idl).with_context(|| format!("`{IDL_SECTION}` is not UTF-8"))?;
        let schema = karmem_idl::load(&idl, &format!("{name}.km")).map_err(|e| anyhow!("{e}"))?;
        let layout = Layout::new(&schema).map_err(|e| anyhow!("{e}"))?;
        std::fs::write(out.join(format!("{name}.wasm")), &lowered.module)?;
        std::fs::write(out.join(format!("{name}.km")), &idl)?;
        std::fs::write(out.join(format!("{name}.layout.json")), karmem_format::gen_ts::layout_json(&layout))?;
        entries.push(json!({
            "name": name,
            "source": format!("fixtures/components/linked/{stem}.wasm"),
            "module": format!("{name}.wasm"),
            "idl": format!("{name}.km"),
            "layout": format!("{name}.layout.json"),
        }));
    }
    Ok(entries)
}

fn fixtures_dir() -> PathBuf {
    karmem_tests::fixtures::fixtures_dir()
}

/// Every component guest (its first variant: `p2` when built so, whose WASI
/// the in-module shim serves), every composition and every WAT fixture that
/// has invocations.
fn sources() -> Result<Vec<Source>> {
    let mut sources: Vec<Source> = Vec::new();
    let named = |name: &str| {
        (
            fixtures_dir().join(format!("{name}.invocations")),
            karmem_tests::fixtures::expected_path(name),
        )
    };
    for fixture in karmem_tests::fixtures::component_fixtures()? {
        if sources.iter().any(|s| s.name == fixture.guest) {
            continue;
        }
        let (invocations, expected) = named(&fixture.guest);
        sources.push(Source {
            name: fixture.guest.clone(),
            origin: format!("fixtures/components/{}.{}.wasm", fixture.guest, fixture.variant),
            component: read(&fixture.path)?,
            invocations,
            expected,
            toolchain: false,
        });
    }
    for fixture in karmem_tests::fixtures::composed_fixtures()? {
        if sources.iter().any(|s| s.name == fixture.guest) {
            continue;
        }
        let (invocations, expected) = named(&fixture.guest);
        sources.push(Source {
            name: fixture.guest.clone(),
            origin: format!("fixtures/components/composed/{}.{}.wasm", fixture.guest, fixture.variant),
            component: read(&fixture.path)?,
            invocations,
            expected,
            toolchain: false,
        });
    }
    for (name, path) in karmem_tests::fixtures::wat_fixtures()? {
        if !fixtures_dir().join(format!("{name}.invocations")).exists() {
            continue;
        }
        let component = wat::parse_file(&path).with_context(|| format!("parsing `{}`", path.display()))?;
        let (invocations, expected) = named(&name);
        sources.push(Source {
            name: name.clone(),
            origin: format!("fixtures/wat/{name}.wat"),
            component,
            invocations,
            expected,
            toolchain: false,
        });
    }
    let wanted = std::env::var(TOOLCHAINS_ENV).unwrap_or_else(|_| DEFAULT_TOOLCHAINS.to_owned());
    if wanted != "none" {
        sources.extend(toolchain_sources(&wanted)?);
    }
    Ok(sources)
}

/// The toolchain fixtures `wanted` names (`all`, or directory names
/// separated by commas) that have a component, invocations and a transcript.
fn toolchain_sources(wanted: &str) -> Result<Vec<Source>> {
    let dir = fixtures_dir().join("toolchains");
    let mut names: Vec<String> = if wanted == "all" {
        std::fs::read_dir(&dir)
            .with_context(|| format!("listing `{}`", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| dir.join(name).join("expected").is_file())
            .collect()
    } else {
        wanted.split(',').map(str::to_owned).collect()
    };
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let fixture = dir.join(&name);
            Ok(Source {
                name: format!("toolchain-{name}"),
                origin: format!("fixtures/toolchains/{name}/component.wasm"),
                component: read(&fixture.join("component.wasm"))?,
                invocations: fixture.join("invocations"),
                expected: fixture.join("expected"),
                toolchain: true,
            })
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))
}

fn write_json(path: &Path, value: &Json) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing `{}`", path.display()))
}

/// The custom section `name` of a core module.
fn custom_section(module: &[u8], name: &str) -> Result<Option<Vec<u8>>> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::CustomSection(section) = payload?
            && section.name() == name
        {
            return Ok(Some(section.data().to_vec()));
        }
    }
    Ok(None)
}

fn memory_count(module: &[u8]) -> Result<usize> {
    let mut count = 0;
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload? {
            wasmparser::Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if matches!(import?.ty, wasmparser::TypeRef::Memory(_)) {
                        count += 1;
                    }
                }
            }
            wasmparser::Payload::MemorySection(reader) => count += reader.count() as usize,
            _ => {}
        }
    }
    Ok(count)
}

fn write_fixture(out: &Path, source: &Source) -> Result<Json> {
    let lowered = karmem_bridge::lower(&source.component, &karmem_bridge::LowerOptions::default()).context("lowering")?;
    let memories = memory_count(&lowered.module)?;
    if memories != 1 {
        bail!("the default lowering has {memories} memories, not one");
    }
    let idl = custom_section(&lowered.module, IDL_SECTION)?
        .with_context(|| format!("the lowered module has no `{IDL_SECTION}` section"))?;
    let idl = String::from_utf8(idl).with_context(|| format!("`{IDL_SECTION}` is not UTF-8"))?;
    let schema = karmem_idl::load(&idl, &format!("{}.km", source.name)).map_err(|e| anyhow!("{e}"))?;
    let layout = Arc::new(Layout::new(&schema).map_err(|e| anyhow!("{e}"))?);
    let world = World::from_component(&source.component)?;

    // the reference outcomes, checked against the committed transcript
    let calls = karmem_tests::invocation::read_invocations(&source.invocations)?;
    let mut reference = ReferenceRunner::new(&source.component)?;
    if source.toolchain {
        reference = reference.trapping_unknown_imports()?;
    }
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(calls.len());
    for invocation in &calls {
        outcomes.push(reference.invoke(invocation).with_context(|| format!("line {}", invocation.line))?);
    }
    let runs: Vec<(&Invocation, Outcome)> = calls.iter().zip(outcomes.iter().cloned()).collect();
    let transcript = render_transcript(&runs);
    let expected_path = &source.expected;
    let committed = std::fs::read_to_string(expected_path).with_context(|| format!("reading `{}`", expected_path.display()))?;
    if committed != transcript {
        bail!("the reference runner no longer reproduces `{}`: run the reference tests", expected_path.display());
    }

    let kit = Kit { layout: layout.clone(), world: &world };
    let mut handle_types: HashMap<String, (String, String)> = HashMap::new();
    let mut cases = Vec::with_capacity(calls.len());
    for (invocation, outcome) in calls.iter().zip(&outcomes) {
        let case = kit
            .case(invocation, outcome, &mut handle_types)
            .with_context(|| format!("line {}: `{}`", invocation.line, invocation.text))?;
        cases.push(case);
    }
    let file = |ext: &str| format!("{}.{ext}", source.name);
    std::fs::write(out.join(file("wasm")), &lowered.module).with_context(|| format!("writing `{}`", file("wasm")))?;
    std::fs::write(out.join(file("km")), &idl).with_context(|| format!("writing `{}`", file("km")))?;
    std::fs::write(out.join(file("layout.json")), karmem_format::gen_ts::layout_json(&layout))
        .with_context(|| format!("writing `{}`", file("layout.json")))?;
    let count = cases.len();
    write_json(
        &out.join(file("cases.json")),
        &json!({ "fixture": source.name, "source": source.origin, "cases": cases }),
    )?;
    Ok(json!({
        "name": source.name,
        "source": source.origin,
        "module": file("wasm"),
        "idl": file("km"),
        "layout": file("layout.json"),
        "cases": file("cases.json"),
        "cases_count": count,
        "warnings": lowered.warnings,
    }))
}

struct Kit<'w> {
    layout: Arc<Layout>,
    world: &'w World,
}

impl Kit<'_> {
    /// The IDL (interface, function) of an exported WIT function.
    fn resolve_export(&self, call: &Call) -> Option<(String, String)> {
        for iface in self.world.interfaces.iter().filter(|i| i.side == Side::Export) {
            for f in &iface.functions {
                let matches = match &call.interface {
                    None => f.core_name == call.function,
                    Some(i) => {
                        f.core_name == format!("{i}#{}", call.function)
                            || (f.core_name.starts_with(&format!("{i}@")) && f.core_name.ends_with(&format!("#{}", call.function)))
                    }
                };
                if matches {
                    return Some((iface.name.clone(), f.name.clone()));
                }
            }
        }
        None
    }

    /// The IDL (interface, function) of an imported WIT function.
    fn resolve_import(&self, wit_interface: &str, wit_function: &str) -> Option<(String, String)> {
        let unversioned = |name: &str| name.split_once('@').map_or(name.to_string(), |(n, _)| n.to_string());
        for iface in self.world.interfaces.iter().filter(|i| i.side == Side::Import) {
            if unversioned(&iface.core_module) != unversioned(wit_interface) {
                continue;
            }
            if let Some(f) = iface.functions.iter().find(|f| f.core_name == wit_function) {
                return Some((iface.name.clone(), f.name.clone()));
            }
        }
        None
    }

    fn case(&self, invocation: &Invocation, outcome: &Outcome, handles: &mut HashMap<String, (String, String)>) -> Result<Json> {
        let mut case = Map::new();
        case.insert("line".into(), json!(invocation.line));
        case.insert("text".into(), json!(abbreviated(&invocation.text)));
        let mut result_types: Vec<TypeId> = Vec::new();
        match &invocation.action {
            Action::Drop(name) => {
                let (interface, resource) = handles.get(name).cloned().with_context(|| format!("`${name}` is not bound"))?;
                case.insert("drop".into(), json!({ "handle": format!("${name}"), "interface": interface, "resource": resource }));
            }
            Action::Call(call) if call.interface.as_deref().is_some_and(|i| i.starts_with("wasi:cli/run")) => {
                // a command's `run` is the module's `_start` (docs/LOWERING.md, WASI)
                case.insert("start".into(), json!({ "wit": call.qualified_name() }));
            }
            Action::Call(call) => {
                let (interface, function) =
                    self.resolve_export(call).with_context(|| format!("no export for `{}`", call.qualified_name()))?;
                let fl = self.layout.function(&interface, &function).context("no layout for the function")?;
                let params = self.layout.as_struct(fl.params).context("parameters")?.fields.clone();
                if params.len() != call.args.len() {
                    bail!("`{function}` takes {} arguments, found {}", params.len(), call.args.len());
                }
                let mut args = Vec::new();
                for (field, arg) in params.iter().zip(&call.args) {
                    args.push(match arg {
                        Arg::Handle(name) => json!(format!("${name}")),
                        Arg::Wave(text) => self.parse_json(field.ty, text)?,
                    });
                }
                result_types = self.layout.as_struct(fl.results).context("results")?.fields.iter().map(|f| f.ty).collect();
                let mut c = json!({ "interface": interface, "function": function, "wit": call.qualified_name(), "args": args });
                if let Some(bind) = &call.bind {
                    if let Some(object) = c.as_object_mut() {
                        object.insert("bind".into(), json!(format!("${bind}")));
                    }
                    // the first handle of the result is the one bound
                    if let Some(resource) = result_types.iter().find_map(|t| first_handle(&self.layout, *t)) {
                        handles.insert(bind.clone(), (interface.clone(), resource));
                    }
                }
                case.insert("call".into(), c);
            }
        }
        let effects = outcome.effects.iter().map(|e| self.effect(e)).collect::<Result<Vec<_>>>()?;
        case.insert("effects".into(), json!(effects));
        let expect = match &outcome.completion {
            Completion::Trapped(_) => json!({ "trap": true }),
            Completion::Exited(code) => json!({ "exit": code }),
            Completion::Returned(values) if case.contains_key("start") => {
                json!({ "returns": values.iter().map(start_result).collect::<Result<Vec<_>>>()? })
            }
            Completion::Returned(values) => {
                if values.len() != result_types.len() {
                    bail!("{} results for {} result types", values.len(), result_types.len());
                }
                let values =
                    values.iter().zip(&result_types).map(|(v, t)| self.tvalue_json(*t, v)).collect::<Result<Vec<_>>>()?;
                json!({ "returns": values })
            }
        };
        case.insert("expect".into(), expect);
        Ok(Json::Object(case))
    }

    fn parse_json(&self, ty: TypeId, text: &str) -> Result<Json> {
        if matches!(self.layout.get(ty).kind, Kind::Handle { .. }) {
            return Ok(json!(text));
        }
        let value = karmem_format::wave::parse(&ValueType::new(self.layout.clone(), ty), text)
            .map_err(|e| anyhow!("parsing `{}`: {e}", abbreviated(text)))?;
        value_json(&self.layout, ty, &value)
    }

    fn effect(&self, effect: &Effect) -> Result<Json> {
        Ok(match effect {
            Effect::Stdout(text) => json!({ "stdout": text }),
            Effect::Stderr(text) => json!({ "stderr": text }),
            Effect::File { path, contents } => json!({ "file": { "path": path, "contents": contents } }),
            Effect::Host(text) => self.host_effect(text).with_context(|| format!("host effect `{}`", abbreviated(text)))?,
        })
    }

    /// `iface#function(args) [-> result]` or `drop tally(total)`, as
    /// recorded by `tests/src/host.rs`.
    fn host_effect(&self, text: &str) -> Result<Json> {
        if let Some(rest) = text.strip_prefix("drop ") {
            let (resource, total) = rest.split_once('(').context("a drop without `(`")?;
            let total = total.strip_suffix(')').context("a drop without `)`")?;
            return Ok(json!({ "host_drop": { "resource": resource, "state": total } }));
        }
        let (qualified, rest) = text.split_once('(').context("a host call without `(`")?;
        let (wit_interface, wit_function) = qualified.split_once('#').context("a host call without `#`")?;
        let (interface, function) = self
            .resolve_import(wit_interface, wit_function)
            .with_context(|| format!("no import `{qualified}` in the world"))?;
        let fl = self.layout.function(&interface, &function).context("no layout for the import")?;
        let param_types: Vec<TypeId> = self.layout.as_struct(fl.params).context("parameters")?.fields.iter().map(|f| f.ty).collect();
        let result_types: Vec<TypeId> = self.layout.as_struct(fl.results).context("results")?.fields.iter().map(|f| f.ty).collect();
        let close = matching_paren(rest).context("unbalanced parentheses")?;
        let (args_text, tail) = rest.split_at(close);
        let tail = tail.strip_prefix(')').unwrap_or(tail);
        let arg_texts = split_arguments(args_text)?;
        if arg_texts.len() != param_types.len() {
            bail!("{} arguments for {} parameters", arg_texts.len(), param_types.len());
        }
        let args = arg_texts.iter().zip(&param_types).map(|(t, ty)| self.parse_json(*ty, t)).collect::<Result<Vec<_>>>()?;
        let mut call = json!({ "interface": interface, "function": function, "wit": qualified, "args": args });
        if let Some(result) = tail.strip_prefix(" -> ") {
            let ty = result_types.first().context("a result for a function without one")?;
            let result = self.parse_json(*ty, result)?;
            if let Some(object) = call.as_object_mut() {
                object.insert("result".into(), result);
            }
        }
        Ok(json!({ "host": call }))
    }

    /// A reference-runner value of type `ty` as JSON.
    fn tvalue_json(&self, ty: TypeId, value: &TValue) -> Result<Json> {
        let layout = &self.layout;
        let inner = |t: TypeId, v: &TValue| self.tvalue_json(t, v);
        Ok(match (&layout.get(ty).kind, value) {
            (Kind::Handle { .. }, TValue::Handle(label)) => json!(label),
            (Kind::Prim(_), v) | (Kind::String { .. }, v) => tscalar(v)?,
            (Kind::Enum(e), TValue::Enum(name)) => {
                json!(e.cases.iter().find(|(c, _)| kebab(c) == *name).context("enum case")?.0)
            }
            (Kind::Flags(f), TValue::Flags(set)) => {
                json!(f.flags.iter().filter(|n| set.contains(&kebab(n))).collect::<Vec<_>>())
            }
            (Kind::Array { .. }, TValue::List(entries)) if layout.map_types(ty).is_some() => {
                let (k, v) = layout.map_types(ty).context("map types")?;
                let mut pairs = Vec::new();
                for entry in entries {
                    let TValue::Tuple(kv) = entry else { bail!("a map entry that is not a tuple") };
                    let [key, value] = kv.as_slice() else { bail!("a map entry that is not a pair") };
                    pairs.push(json!([inner(k, key)?, inner(v, value)?]));
                }
                Json::Array(pairs)
            }
            (Kind::Array { elem, .. } | Kind::FixedArray { elem, .. }, TValue::List(items)) => {
                Json::Array(items.iter().map(|v| inner(*elem, v)).collect::<Result<_>>()?)
            }
            (Kind::Struct(s), TValue::Tuple(items)) => {
                Json::Array(s.fields.iter().zip(items).map(|(f, v)| inner(f.ty, v)).collect::<Result<_>>()?)
            }
            (Kind::Struct(s), TValue::Record(fields)) => {
                let mut object = Map::new();
                for (f, (_, v)) in s.fields.iter().zip(fields) {
                    object.insert(f.name.clone(), inner(f.ty, v)?);
                }
                Json::Object(object)
            }
            (Kind::Union(u), TValue::Variant(name, payload)) => {
                let case = u.cases.iter().find(|c| kebab(&c.name) == *name).context("variant case")?;
                let payload = match (case.ty, payload) {
                    (Some(t), Some(p)) => inner(t, p)?,
                    _ => Json::Null,
                };
                json!({ case.name.clone(): payload })
            }
            (Kind::Option { some, .. }, TValue::Option(v)) => match v {
                Some(v) => json!({ "some": inner(*some, v)? }),
                None => Json::Null,
            },
            (Kind::Result { ok, err, .. }, TValue::Result(r)) => {
                let side = |t: &Option<TypeId>, v: &Option<Box<TValue>>| -> Result<Json> {
                    Ok(match (t, v) {
                        (Some(t), Some(v)) => inner(*t, v)?,
                        _ => Json::Null,
                    })
                };
                match r {
                    Ok(v) => json!({ "ok": side(ok, v)? }),
                    Err(v) => json!({ "err": side(err, v)? }),
                }
            }
            (kind, value) => bail!("cannot show {value:?} as {kind:?}"),
        })
    }
}

/// The resource of the first handle a value of type `ty` holds.
fn first_handle(layout: &Layout, ty: TypeId) -> Option<String> {
    match &layout.get(ty).kind {
        Kind::Handle { resource, .. } => Some(resource.clone()),
        Kind::Array { elem, .. } | Kind::FixedArray { elem, .. } | Kind::Option { some: elem, .. } => first_handle(layout, *elem),
        Kind::Struct(s) => s.fields.iter().find_map(|f| first_handle(layout, f.ty)),
        _ => None,
    }
}

/// `wasi:cli/run#run`'s `result` as JSON.
fn start_result(value: &TValue) -> Result<Json> {
    match value {
        TValue::Result(Ok(None)) => Ok(json!({ "ok": null })),
        TValue::Result(Err(None)) => Ok(json!({ "err": null })),
        other => bail!("`run` returned {other:?}"),
    }
}

/// Where the `)` closing an argument list that started before `text` is.
fn matching_paren(text: &str) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in text.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '\'' => {}
            '(' | '[' | '{' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn abbreviated(text: &str) -> String {
    karmem_tests::harness::abbreviate(text)
}

/// A float as JSON: a number, or `"nan"`, `"inf"`, `"-inf"`.
fn float_json(x: f64) -> Json {
    if x.is_nan() {
        json!("nan")
    } else if x.is_infinite() {
        json!(if x > 0.0 { "inf" } else { "-inf" })
    } else {
        serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
    }
}

fn tscalar(value: &TValue) -> Result<Json> {
    Ok(match value {
        TValue::Bool(b) => json!(b),
        TValue::S8(x) => json!(x),
        TValue::S16(x) => json!(x),
        TValue::S32(x) => json!(x),
        TValue::U8(x) => json!(x),
        TValue::U16(x) => json!(x),
        TValue::U32(x) => json!(x),
        TValue::S64(x) => json!(x.to_string()),
        TValue::U64(x) => json!(x.to_string()),
        TValue::F32(x) => float_json(f64::from(*x)),
        TValue::F64(x) => float_json(*x),
        TValue::Char(c) => json!(c.to_string()),
        TValue::String(s) => json!(s),
        other => bail!("{other:?} is not a scalar"),
    })
}

/// A `karmem_format` value of type `ty` as JSON (docs/HOSTS.md).
pub fn value_json(layout: &Layout, ty: TypeId, value: &Value) -> Result<Json> {
    let inner = |t: TypeId, v: &Value| value_json(layout, t, v);
    Ok(match (&layout.get(ty).kind, value) {
        (_, Value::Bool(b)) => json!(b),
        (_, Value::S8(x)) => json!(x),
        (_, Value::S16(x)) => json!(x),
        (_, Value::S32(x)) => json!(x),
        (_, Value::U8(x)) => json!(x),
        (_, Value::U16(x)) => json!(x),
        (_, Value::U32(x)) => json!(x),
        (_, Value::S64(x)) => json!(x.to_string()),
        (_, Value::U64(x)) => json!(x.to_string()),
        (_, Value::F32(x)) => float_json(f64::from(*x)),
        (_, Value::F64(x)) => float_json(*x),
        (_, Value::Char(c)) => json!(c.to_string()),
        (_, Value::String(s)) => json!(s),
        (_, Value::Enum(name)) => json!(name),
        (_, Value::Flags(names)) => json!(names),
        (Kind::Array { .. }, Value::Map(entries)) => {
            let (k, v) = layout.map_types(ty).context("a map value for a list type")?;
            Json::Array(entries.iter().map(|(key, value)| Ok(json!([inner(k, key)?, inner(v, value)?]))).collect::<Result<_>>()?)
        }
        (Kind::Array { elem, .. } | Kind::FixedArray { elem, .. }, Value::List(items)) => {
            Json::Array(items.iter().map(|v| inner(*elem, v)).collect::<Result<_>>()?)
        }
        (Kind::Struct(s), Value::Record(fields)) if is_tuple_shaped(s.fields.iter().map(|f| f.name.as_str())) => {
            Json::Array(s.fields.iter().zip(fields).map(|(f, (_, v))| inner(f.ty, v)).collect::<Result<_>>()?)
        }
        (Kind::Struct(s), Value::Record(fields)) => {
            let mut object = Map::new();
            for (f, (_, v)) in s.fields.iter().zip(fields) {
                object.insert(f.name.clone(), inner(f.ty, v)?);
            }
            Json::Object(object)
        }
        (Kind::Union(u), Value::Variant(name, payload)) => {
            let case = u.cases.iter().find(|c| c.name == *name).context("union case")?;
            let payload = match (case.ty, payload) {
                (Some(t), Some(p)) => inner(t, p)?,
                _ => Json::Null,
            };
            json!({ name.clone(): payload })
        }
        (Kind::Option { some, .. }, Value::Option(v)) => match v {
            Some(v) => json!({ "some": inner(*some, v)? }),
            None => Json::Null,
        },
        (Kind::Result { ok, err, .. }, Value::Result(r)) => {
            let side = |t: &Option<TypeId>, v: &Option<Box<Value>>| -> Result<Json> {
                Ok(match (t, v) {
                    (Some(t), Some(v)) => inner(*t, v)?,
                    _ => Json::Null,
                })
            };
            match r {
                Ok(v) => json!({ "ok": side(ok, v)? }),
                Err(v) => json!({ "err": side(err, v)? }),
            }
        }
        (kind, value) => bail!("cannot show {value:?} as {kind:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_closing_paren() {
        assert_eq!(matching_paren("\"a)\", [1, (2)]) -> 3"), Some(14));
        assert_eq!(matching_paren("1, 2"), None);
    }

    #[test]
    fn floats_are_numbers_or_words() {
        assert_eq!(float_json(f64::NAN), json!("nan"));
        assert_eq!(float_json(f64::NEG_INFINITY), json!("-inf"));
        assert_eq!(float_json(1.5), json!(1.5));
    }
}
