//! Schemas the layout engine refuses: the error names the type, an item by
//! its name and an anonymous type by its KarmemIDL spelling.

#![cfg(feature = "schema")]

use karmem_format::layout::Layout;

fn layout_error(source: &str) -> String {
    let schema = match karmem_idl::load(source, "test.km") {
        Ok(schema) => schema,
        Err(diagnostic) => return format!("the schema does not resolve: {diagnostic}"),
    };
    match Layout::new(&schema) {
        Ok(_) => "the schema lays out".to_string(),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_fixed_array_past_4_gib_is_spelled() {
    let source = "package t:t;\nstruct big (inline) {\n    x: [65536][65536]u8;\n}\n";
    assert_eq!(layout_error(source), "cannot lay out `[65536][65536]u8`: larger than 4 GiB");
}

#[test]
fn an_option_past_4_gib_is_spelled() {
    let source = "package t:t;\nstruct big (inline) {\n    x: option<[4294967295]u8>;\n}\n";
    assert_eq!(layout_error(source), "cannot lay out `option<[4294967295]u8>`: larger than 4 GiB");
}
