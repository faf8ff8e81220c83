//! The handshake's checks without a guest: type hashes against a schema
//! (docs/ABI.md §5) and the custom sections a lowered module must carry.
//! The whole handshake on real lowered fixtures runs through
//! `karmem-bridge run` (bridge/tests/run_cli.rs).

use karmem_format::layout::Layout;
use karmem_runtime::handshake::{ModuleAbi, check_type_hashes};
use karmem_runtime::link::{FunctionInfo, GuestInterfaces, InterfaceInfo, Pattern};

const IDL: &str = "package example:demo;\n\ninterface host (dynamic, direct) {\n    log: fn(line: []u8 #string) ();\n    add: fn(a: u32, b: u32) (sum: u32);\n}\n";

fn interfaces(layout: &Layout, add_hash: Option<u64>) -> GuestInterfaces {
    let function = |name: &str, id| FunctionInfo {
        name: name.to_string(),
        id,
        type_hash: layout.function_hash("host", name).unwrap_or_default(),
    };
    let mut add = function("add", 1);
    if let Some(hash) = add_hash {
        add.type_hash = hash;
    }
    GuestInterfaces {
        imports: vec![InterfaceInfo {
            package: "example:demo".to_string(),
            name: "host".to_string(),
            pattern: Pattern::Direct,
            functions: vec![function("log", 0), add],
            memories: Vec::new(),
            wit_package: String::new(),
            wit_interface: String::new(),
            wit_version: String::new(),
        }],
        exports: Vec::new(),
    }
}

#[test]
fn type_hashes_are_checked_and_a_mismatch_names_the_function() {
    let schema = karmem_idl::load(IDL, "demo.km").expect("schema");
    let layout = Layout::new(&schema).expect("layout");
    check_type_hashes(&interfaces(&layout, None), &layout).expect("matching hashes pass");

    let error = check_type_hashes(&interfaces(&layout, Some(0x1234)), &layout).expect_err("mismatch");
    let message = format!("{error:#}");
    assert!(message.contains("type hash mismatch for imported function `host.add`"), "{message}");

    let mut unknown = interfaces(&layout, None);
    if let Some(interface) = unknown.imports.first_mut() {
        interface.functions.push(FunctionInfo { name: "gone".to_string(), id: 2, type_hash: 1 });
    }
    let error = check_type_hashes(&unknown, &layout).expect_err("unknown function");
    assert!(format!("{error:#}").contains("`host.gone` is not in the schema"));
}

#[test]
fn components_and_modules_without_the_abi_are_refused() {
    let component = wat::parse_str("(component)").expect("component");
    let error = ModuleAbi::from_module_bytes(&component).expect_err("component");
    assert!(format!("{error:#}").contains("run `karmem-bridge lower` on it first"));

    let plain = wat::parse_str("(module (memory (export \"memory\") 1))").expect("module");
    let error = ModuleAbi::from_module_bytes(&plain).expect_err("plain module");
    assert!(format!("{error:#}").contains("no `karmem:abi` section"));
}
