//! The handshake's compatibility check (docs/ABI.md §5): a guest whose
//! function gained a parameter (a new type hash) is accepted by a host built
//! against the older schema, and the other way round; a guest whose function
//! changed incompatibly is refused, naming the function. The guest is a core
//! module carrying the ABI's custom sections; its descriptors are what the
//! handshake would decode, built from its own schema.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed step fails the test"
)]

use karmem_format::layout::Layout;
use karmem_runtime::handshake::{ModuleAbi, check_compatibility};
use karmem_runtime::link::{FunctionInfo, GuestInterfaces, InterfaceInfo, Pattern};

const V1: &str = "package example:jobs;\n\nstruct job (dynamic) {\n    id: u32;\n}\n\ninterface api (dynamic, direct) {\n    run: fn(j: job) (ok: bool);\n}\n";
const V2: &str = "package example:jobs;\n\nstruct job (dynamic) {\n    id: u32;\n    priority: u8;\n}\n\ninterface api (dynamic, direct) {\n    run: fn(j: job, retries: u32) (ok: bool);\n}\n";
const RETYPED: &str = "package example:jobs;\n\nstruct job (dynamic) {\n    id: u32;\n}\n\ninterface api (dynamic, direct) {\n    run: fn(j: u64) (ok: bool);\n}\n";

fn guest(idl: &str) -> ModuleAbi {
    let escaped = idl.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let (abi, idl) = (karmem_contract::ABI_SECTION, karmem_contract::IDL_SECTION);
    let wat = format!("(module (@custom \"{abi}\" \"0.1\") (@custom \"{idl}\" \"{escaped}\"))");
    let bytes = wat::parse_str(&wat).expect("module");
    ModuleAbi::from_module_bytes(&bytes).expect("abi sections")
}

fn descriptors(layout: &Layout, hash: Option<u64>) -> GuestInterfaces {
    GuestInterfaces {
        imports: Vec::new(),
        exports: vec![InterfaceInfo {
            package: "example:jobs".to_string(),
            name: "api".to_string(),
            pattern: Pattern::Direct,
            functions: vec![FunctionInfo {
                name: "run".to_string(),
                id: 0,
                type_hash: hash.unwrap_or_else(|| layout.function_hash("api", "run").unwrap_or_default()),
            }],
            memories: Vec::new(),
            wit_package: String::new(),
            wit_interface: String::new(),
            wit_version: String::new(),
        }],
    }
}

fn schema(idl: &str) -> karmem_idl::Schema {
    karmem_idl::load(idl, "host.km").expect("host schema")
}

#[test]
fn an_evolved_function_is_accepted_in_both_directions() {
    let newer = guest(V2);
    let older_host = schema(V1);
    assert_ne!(
        newer.layout.function_hash("api", "run"),
        Layout::new(&older_host).expect("layout").function_hash("api", "run"),
        "the hashes differ"
    );
    check_compatibility(&descriptors(&newer.layout, None), &newer, &older_host).expect("older host, newer guest");

    let older = guest(V1);
    check_compatibility(&descriptors(&older.layout, None), &older, &schema(V2)).expect("newer host, older guest");
}

#[test]
fn an_incompatible_function_is_refused_and_named() {
    let retyped = guest(RETYPED);
    let error = check_compatibility(&descriptors(&retyped.layout, None), &retyped, &schema(V1)).expect_err("retyped");
    let message = format!("{error:#}");
    assert!(message.contains("exported function `api.run` is incompatible"), "{message}");
    assert!(message.contains("signature of function `run` changed"), "{message}");
}

#[test]
fn a_descriptor_that_disagrees_with_the_section_is_refused() {
    let newer = guest(V2);
    let error = check_compatibility(&descriptors(&newer.layout, Some(0x1234)), &newer, &schema(V2)).expect_err("bad hash");
    let message = format!("{error:#}");
    assert!(message.contains("disagree with its `karmem:idl` section"), "{message}");
    assert!(message.contains("`api.run`"), "{message}");
}
