//! `invoke::Session` against guests that lie: a result buffer past the end
//! of memory (up to 4 GiB claimed) is an error naming the call, not a huge
//! allocation or a crash, and the session is poisoned after a trap.

use anyhow::{Context, Result};
use karmem_runtime::invoke::{Session, SessionOptions};
use karmem_runtime::{Runtime, RuntimeConfig};

const LIAR: &str = r#"(module
  (memory (export "memory") 1)
  ;; 4 GiB - 1 bytes at offset 16
  (func (export "api.huge") (param i32 i32) (result i64) (i64.const 0xFFFFFFFF00000010))
  (func (export "api.trap") (param i32 i32) (result i64) unreachable)
  (func (export "api.empty") (param i32 i32) (result i64) (i64.const 0)))"#;

#[test]
fn a_result_buffer_outside_memory_is_an_error() -> Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let mut session = Session::new(&runtime, &wat::parse_str(LIAR)?, &SessionOptions::default())?;
    assert!(session.call_raw("api", "empty", &[])?.is_empty());
    let error = session
        .call_raw("api", "huge", &[])
        .err()
        .context("must fail")?;
    let message = format!("{error:#}");
    assert!(
        message.contains("result of `api.huge`") && message.contains("outside"),
        "{message}"
    );

    assert!(session.call_raw("api", "trap", &[]).is_err());
    assert!(session.poisoned().is_some());
    let refused = session
        .call_raw("api", "empty", &[])
        .err()
        .context("poisoned")?;
    assert!(
        format!("{refused:#}").contains("unusable after an earlier failure"),
        "{refused:#}"
    );
    Ok(())
}
