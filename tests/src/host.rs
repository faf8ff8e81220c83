//! Host implementations of the fixtures' custom (non-WASI) imports, for the
//! reference runner.
//!
//! Owns: defining every custom import a component asks for in a wasmtime
//! [`Linker`], with `func_new` so it works for any fixture, and recording each
//! call as a host-observed effect. A function without results needs nothing
//! more than that record; functions with results and imported resources are
//! implemented here by name (see [`HOST_INTERFACE`]). Anything else a
//! component imports is refused when it is linked.
//!
//! The interface `karmem:fixtures/host` (fixtures/guests/wit/host.wit):
//! - `log(line)`: recorded only;
//! - `next-id() -> u32`: 1, 2, 3, ... per instance;
//! - `emit(label, values, extra)`: recorded only;
//! - `lines(count, prefix) -> list<string>`: `<prefix>0`, `<prefix>1`, ...;
//! - resource `tally`: `constructor(start: u64)`, `add(n: u64) -> u64` (the
//!   new total), `[static]tally.named(name: string) -> tally` (starts at the
//!   name's length); dropping it records `drop tally(<total>)`.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use wasmtime::component::types::{ComponentFunc, ComponentInstance, ComponentItem};
use wasmtime::component::{Linker, LinkerInstance, ResourceDynamic, ResourceType, Val};
use wasmtime::{AsContextMut, Engine, StoreContextMut};

use crate::harness::Effect;

/// The interface whose functions with results are implemented here.
pub const HOST_INTERFACE: &str = "karmem:fixtures/host";

/// Host-side state of the custom imports, kept in the store.
#[derive(Debug, Default)]
pub struct HostState {
    /// Effects observed since the runner last took them.
    pub effects: Vec<Effect>,
    next_id: u32,
    next_rep: u32,
    /// Live `tally` resources by rep.
    tallies: HashMap<u32, u64>,
}

/// Access to [`HostState`] inside a store's data.
pub trait HasHostState: 'static {
    fn host(&mut self) -> &mut HostState;
}

/// The dynamic resource type id used for `tally`.
const TALLY_TYPE: u32 = 1;

/// Defines all custom (non-`wasi:`) imports of `component_type` in `linker`.
pub fn define_custom_imports<T: HasHostState>(
    linker: &mut Linker<T>,
    engine: &Engine,
    component_type: &wasmtime::component::types::Component,
) -> Result<()> {
    for (name, item) in component_type.imports(engine) {
        if name.starts_with("wasi:") {
            continue;
        }
        match item.ty {
            ComponentItem::ComponentInstance(instance) => {
                let mut linker_instance = wasmtime_result(linker.instance(name))
                    .with_context(|| format!("linking `{name}`"))?;
                define_instance(&mut linker_instance, engine, name, &instance)
                    .with_context(|| format!("linking `{name}`"))?;
            }
            ComponentItem::ComponentFunc(func) => {
                define_func(&mut linker.root(), None, name, &func)
                    .with_context(|| format!("linking `{name}`"))?;
            }
            _ => bail!(
                "the reference runner cannot provide the import `{name}` (only instances and functions)"
            ),
        }
    }
    Ok(())
}

fn define_instance<T: HasHostState>(
    linker: &mut LinkerInstance<'_, T>,
    engine: &Engine,
    interface: &str,
    instance: &ComponentInstance,
) -> Result<()> {
    for (name, item) in instance.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                define_func(linker, Some(interface), name, &func)?
            }
            ComponentItem::Resource(_) => define_resource(linker, interface, name)?,
            // Plain type exports (records, enums, ...) need no definition.
            ComponentItem::Type(_) => {}
            _ => bail!("cannot provide `{interface}#{name}`: not a function, resource or type"),
        }
    }
    Ok(())
}

fn unversioned(interface: &str) -> &str {
    interface
        .split_once('@')
        .map_or(interface, |(name, _)| name)
}

fn define_resource<T: HasHostState>(
    linker: &mut LinkerInstance<'_, T>,
    interface: &str,
    name: &str,
) -> Result<()> {
    if unversioned(interface) != HOST_INTERFACE || name != "tally" {
        bail!("no host implementation for the resource `{interface}#{name}`");
    }
    let defined = linker.resource(
        name,
        ResourceType::host_dynamic(TALLY_TYPE),
        |mut store: StoreContextMut<'_, T>, rep| {
            let host = store.data_mut().host();
            let total = host
                .tallies
                .remove(&rep)
                .ok_or_else(|| wasmtime::Error::msg(format!("dropping unknown tally {rep}")))?;
            host.effects
                .push(Effect::Host(format!("drop tally({total})")));
            Ok(())
        },
    );
    wasmtime_result(defined)
}

fn define_func<T: HasHostState>(
    linker: &mut LinkerInstance<'_, T>,
    interface: Option<&str>,
    name: &str,
    func: &ComponentFunc,
) -> Result<()> {
    let qualified = match interface {
        Some(interface) => format!("{interface}#{name}"),
        None => name.to_owned(),
    };
    let key = (
        interface.map(unversioned).unwrap_or_default().to_owned(),
        name.to_owned(),
    );
    let has_results = func.results().len() > 0;
    let known = known_function(&key.0, &key.1);
    if has_results && !known {
        bail!("no host implementation for `{qualified}`, which returns a value");
    }
    let qualified = Arc::new(qualified);
    let defined = linker.func_new(name, move |mut store, _ty, params, results| {
        let arg_text = params
            .iter()
            .map(describe_val)
            .collect::<Vec<_>>()
            .join(", ");
        if known {
            implement(&mut store, &key.0, &key.1, params, results)
                .with_context(|| format!("host function `{qualified}`"))
                .map_err(wasmtime::Error::from_anyhow)?;
        }
        let mut record = format!("{qualified}({arg_text})");
        if let Some(result) = results.first() {
            record.push_str(" -> ");
            record.push_str(&describe_val(result));
        }
        store.data_mut().host().effects.push(Effect::Host(record));
        Ok(())
    });
    wasmtime_result(defined)
}

/// A wasmtime result as an anyhow one, so that `with_context` applies.
pub fn wasmtime_result<T>(result: wasmtime::Result<T>) -> Result<T> {
    result.map_err(anyhow::Error::from)
}

fn known_function(interface: &str, name: &str) -> bool {
    interface == HOST_INTERFACE
        && matches!(
            name,
            "log"
                | "emit"
                | "next-id"
                | "lines"
                | "[constructor]tally"
                | "[method]tally.add"
                | "[static]tally.named"
        )
}

fn implement<T: HasHostState>(
    store: &mut StoreContextMut<'_, T>,
    interface: &str,
    name: &str,
    params: &[Val],
    results: &mut [Val],
) -> Result<()> {
    debug_assert_eq!(interface, HOST_INTERFACE);
    let result = match (name, params) {
        ("log", _) => None,
        ("next-id", []) => {
            let host = store.data_mut().host();
            host.next_id += 1;
            Some(Val::U32(host.next_id))
        }
        ("emit", _) => None,
        ("lines", [Val::U32(count), Val::String(prefix)]) => Some(Val::List(
            (0..*count)
                .map(|index| Val::String(format!("{prefix}{index}")))
                .collect(),
        )),
        ("[constructor]tally", [Val::U64(start)]) => Some(new_tally(store, *start)?),
        ("[static]tally.named", [Val::String(tally_name)]) => {
            let start = u64::try_from(tally_name.len()).unwrap_or(u64::MAX);
            Some(new_tally(store, start)?)
        }
        ("[method]tally.add", [Val::Resource(handle), Val::U64(amount)]) => {
            let resource = wasmtime_result(ResourceDynamic::try_from_resource_any(
                *handle,
                store.as_context_mut(),
            ))?;
            let total = store
                .data_mut()
                .host()
                .tallies
                .get_mut(&resource.rep())
                .with_context(|| format!("unknown tally {}", resource.rep()))?;
            *total = total.wrapping_add(*amount);
            Some(Val::U64(*total))
        }
        (name, params) => bail!("unexpected call `{name}` with {} arguments", params.len()),
    };
    if let (Some(value), Some(slot)) = (result, results.first_mut()) {
        *slot = value;
    }
    Ok(())
}

fn new_tally<T: HasHostState>(store: &mut StoreContextMut<'_, T>, start: u64) -> Result<Val> {
    let host = store.data_mut().host();
    host.next_rep += 1;
    let rep = host.next_rep;
    host.tallies.insert(rep, start);
    let handle = wasmtime_result(
        ResourceDynamic::new_own(rep, TALLY_TYPE).try_into_resource_any(store.as_context_mut()),
    )?;
    Ok(Val::Resource(handle))
}

/// WAVE text of a value passed to or returned from a host function; handles
/// are shown as `handle`.
fn describe_val(val: &Val) -> String {
    crate::reference::value_from_val(val, &mut |_| "handle".to_owned()).to_wave()
}

#[cfg(test)]
mod tests {
    use super::unversioned;

    #[test]
    fn strips_versions() {
        assert_eq!(
            unversioned("karmem:fixtures/host@0.1.0"),
            "karmem:fixtures/host"
        );
        assert_eq!(unversioned("karmem:fixtures/host"), "karmem:fixtures/host");
    }
}
