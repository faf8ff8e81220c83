//! `karmem-bridge encode` and `decode` through the real binary: a value
//! written as a message reads back as the same WAVE text, a message the
//! paper's figures describe decodes to its value, and stdin/stdout work as
//! `-`. The refusals (hostile messages, unknown types, bad values) are cases
//! of the malformed corpus (`fixtures/malformed/message-*.bin`).

#![allow(
    clippy::panic, clippy::unwrap_used,
    reason = "test code: a failed step fails the test"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn bridge(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_karmem-bridge"))
        .args(args)
        .current_dir(schemas())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run karmem-bridge: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

const NODES: &str = "malformed/schemas/messages.km";

#[test]
fn a_tree_of_dynamic_structs_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = tmp.path().join("tree.bin");
    let value = r#"{value: 7, name: "ωmega", children: [{value: 1, name: "", children: []}, {value: 2, name: "b", children: [{value: 3, name: "c", children: []}]}]}"#;
    ok(&bridge(&["encode", NODES, "-t", "node", value, "-o", msg.to_str().unwrap()], b""));
    let bytes = std::fs::read(&msg).unwrap();
    assert_eq!(&bytes[..4], &[0x0c, 0, 0, 0], "a message starts with the empty-struct word");
    let printed = ok(&bridge(&["decode", NODES, "-t", "node", msg.to_str().unwrap()], b""));
    assert_eq!(printed.trim(), value);
}

#[test]
fn stdin_and_stdout_are_dash() {
    let message = bridge(&["encode", NODES, "-t", "batch", "-"], br#"{readings: [{timestamp: -5, value: 1.5}], tags: [1, 65535]}"#);
    assert!(message.status.success(), "encode failed: {}", String::from_utf8_lossy(&message.stderr));
    let bytes = message.stdout;
    let printed = ok(&bridge(&["decode", NODES, "-t", "batch", "-"], &bytes));
    assert_eq!(printed.trim(), "{readings: [{timestamp: -5, value: 1.5}], tags: [1, 65535]}");
}

/// FORMAT.md §5.2's golden message of the paper's Figure 8 (`example` v1),
/// read by the v3 schema of Figure 10: the fields v1 did not write read as 0.
#[test]
fn an_older_message_reads_with_defaults() {
    let v1 = [0x0c, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0];
    let printed = ok(&bridge(&["decode", "idl/paper-fig10.km", "-t", "example", "-"], &v1));
    assert_eq!(printed.trim(), "{field-1: 1, field-2: 0, field-3: 0}");
}
