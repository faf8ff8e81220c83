//! Calling a Karmem-ABI module through its edge, for the tests that check a lowered module
//! traps where the component model does (`canonical_checks`, `handle_tables`).

#![allow(clippy::unwrap_used, reason = "test helper: a broken case fails the test")]

/// A Karmem-ABI module through its edge (`karmem_runtime::invoke::Session`): instantiate, then
/// call the root function `export` (no parameters) when given; a failure as its debug text.
pub fn through_the_edge(module: &[u8], export: Option<&str>) -> Result<(), String> {
    let runtime = karmem_runtime::Runtime::new(karmem_runtime::RuntimeConfig::default()).unwrap();
    let options = karmem_runtime::invoke::SessionOptions::default();
    let mut session = karmem_runtime::invoke::Session::new(&runtime, module, &options).map_err(|e| format!("{e:?}"))?;
    if let Some(name) = export {
        let (interface, function) = session.resolve_function(name).unwrap();
        let layout = &session.abi().unwrap().layout;
        let text = format!("{}()", karmem_format::wave::kebab(&function));
        let parsed = karmem_format::wave::parse_invocation(layout, &interface, &text).unwrap();
        session.invoke(&interface, &parsed.function, &parsed.args).map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}
