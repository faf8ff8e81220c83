//! The differential harness: what a runner is, what an invocation produces,
//! how two outcomes are compared, and the snapshot transcripts.
//!
//! Owns: the [`Runner`] trait that the reference runner (wasmtime's component
//! runtime) implements and the lowered runners (core module on wasmtime,
//! wasmi, node) will; [`Outcome`]; [`compare`]; transcript rendering and the
//! `fixtures/<name>.expected` snapshot check (`BLESS=1` rewrites). Running
//! anything is left to the runners.

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::invocation::Invocation;
use crate::value::Value;

/// Something that can run a fixture's invocations one after another, keeping
/// state (handles, memory) between them.
pub trait Runner {
    /// Runs one invocation. A guest trap or exit is an [`Outcome`]; an `Err`
    /// means the harness could not run it at all (unknown function, an
    /// argument that does not parse at the parameter's type, ...).
    fn invoke(&mut self, invocation: &Invocation) -> Result<Outcome>;
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub completion: Completion,
    /// Effects the host observed during the call, in this order: host import
    /// calls (in call order), then stdout, stderr and files written.
    pub effects: Vec<Effect>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// The call returned these results (none, or one for WIT functions).
    Returned(Vec<Value>),
    /// The call trapped; the message is for people, never compared.
    Trapped(String),
    /// The guest exited through WASI with this status.
    Exited(i32),
}

/// A side effect the host observed.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A call to a custom host import: `interface#function(args)` in WAVE,
    /// with ` -> result` when it returned something.
    Host(String),
    Stdout(String),
    Stderr(String),
    /// A file in the preopened directory created or changed by the call.
    File {
        path: String,
        contents: String,
    },
}

/// Compares a candidate outcome against the reference value for value
/// (NaNs equal whatever their payload); traps compare only as trap versus no
/// trap. Returns an error describing the first difference.
pub fn compare(reference: &Outcome, candidate: &Outcome) -> Result<()> {
    match (&reference.completion, &candidate.completion) {
        (Completion::Trapped(_), Completion::Trapped(_)) => {}
        (Completion::Exited(a), Completion::Exited(b)) if a == b => {}
        (Completion::Returned(a), Completion::Returned(b)) => {
            if a.len() != b.len() {
                bail!(
                    "reference returned {} values, candidate {}",
                    a.len(),
                    b.len()
                );
            }
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                if !x.equivalent(y) {
                    bail!(
                        "result {index} differs: reference `{}`, candidate `{}`",
                        abbreviate(&x.to_wave()),
                        abbreviate(&y.to_wave())
                    );
                }
            }
        }
        (a, b) => bail!("reference {}, candidate {}", describe(a), describe(b)),
    }
    if reference.effects != candidate.effects {
        bail!(
            "effects differ:\n  reference: {}\n  candidate: {}",
            render_effects_inline(&reference.effects),
            render_effects_inline(&candidate.effects)
        );
    }
    Ok(())
}

fn describe(completion: &Completion) -> String {
    match completion {
        Completion::Returned(values) => {
            format!("returned `{}`", abbreviate(&render_results(values)))
        }
        Completion::Trapped(message) => format!("trapped ({message})"),
        Completion::Exited(code) => format!("exited with {code}"),
    }
}

fn render_effects_inline(effects: &[Effect]) -> String {
    let mut text = String::new();
    for effect in effects {
        render_effect(&mut text, effect);
        text.push_str("; ");
    }
    text
}

/// Runs every invocation in order and pairs each with its outcome.
pub fn run_all<'a>(
    runner: &mut dyn Runner,
    invocations: &'a [Invocation],
) -> Result<Vec<(&'a Invocation, Outcome)>> {
    invocations
        .iter()
        .map(|invocation| {
            let outcome = runner.invoke(invocation).with_context(|| {
                format!(
                    "line {}: `{}`",
                    invocation.line,
                    abbreviate(&invocation.text)
                )
            })?;
            Ok((invocation, outcome))
        })
        .collect()
}

/// Values longer than this are shown in transcripts by length and hash.
const LONGEST_SHOWN: usize = 200;

/// `text` itself if short, else its length and FNV-1a hash.
pub fn abbreviate(text: &str) -> String {
    if text.len() <= LONGEST_SHOWN {
        return text.to_owned();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let head: String = text.chars().take(40).collect();
    format!("{head}... ({} bytes, fnv1a {hash:016x})", text.len())
}

fn render_results(values: &[Value]) -> String {
    match values {
        [] => "()".to_owned(),
        [single] => single.to_wave(),
        many => {
            let parts: Vec<String> = many.iter().map(Value::to_wave).collect();
            format!("({})", parts.join(", "))
        }
    }
}

fn render_effect(out: &mut String, effect: &Effect) {
    let quoted = |text: &str| abbreviate(&Value::String(text.to_owned()).to_wave());
    // Writing into a String cannot fail.
    let _ = match effect {
        Effect::Host(call) => write!(out, "host: {}", abbreviate(call)),
        Effect::Stdout(text) => write!(out, "stdout: {}", quoted(text)),
        Effect::Stderr(text) => write!(out, "stderr: {}", quoted(text)),
        Effect::File { path, contents } => write!(out, "file {path}: {}", quoted(contents)),
    };
}

/// The transcript of a run: each invocation line, then its effects and its
/// completion, indented. This is the text kept in `fixtures/<name>.expected`.
pub fn render_transcript(runs: &[(&Invocation, Outcome)]) -> String {
    let mut out = String::new();
    for (invocation, outcome) in runs {
        out.push_str(&invocation.text);
        out.push('\n');
        for effect in &outcome.effects {
            out.push_str("  ");
            render_effect(&mut out, effect);
            out.push('\n');
        }
        let _ = match &outcome.completion {
            Completion::Returned(values) => {
                writeln!(out, "  => {}", abbreviate(&render_results(values)))
            }
            Completion::Trapped(_) => writeln!(out, "  => trap"),
            Completion::Exited(code) => writeln!(out, "  => exit {code}"),
        };
    }
    out
}

/// Compares `actual` with the snapshot at `path`; with `BLESS=1` in the
/// environment, writes `actual` there instead.
pub fn check_snapshot(path: &Path, actual: &str) -> Result<()> {
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        return std::fs::write(path, actual)
            .with_context(|| format!("blessing `{}`", path.display()));
    }
    let expected = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading snapshot `{}` (run with BLESS=1 to create it)",
            path.display()
        )
    })?;
    if expected != actual {
        bail!(
            "`{}` does not match (BLESS=1 rewrites it)\n{}",
            path.display(),
            first_difference(&expected, actual)
        );
    }
    Ok(())
}

fn first_difference(expected: &str, actual: &str) -> String {
    let mut expected_lines = expected.lines();
    let mut actual_lines = actual.lines();
    let mut line = 1;
    loop {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => line += 1,
            (None, None) => return "the texts differ only in line endings".to_owned(),
            (e, a) => {
                return format!(
                    "first difference at line {line}:\n  expected: {}\n  actual:   {}",
                    e.unwrap_or("<end of file>"),
                    a.unwrap_or("<end of file>")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned(values: Vec<Value>) -> Outcome {
        Outcome {
            completion: Completion::Returned(values),
            effects: vec![],
        }
    }

    #[test]
    fn traps_compare_only_as_traps() {
        let a = Outcome {
            completion: Completion::Trapped("unreachable".into()),
            effects: vec![],
        };
        let b = Outcome {
            completion: Completion::Trapped("divide by zero".into()),
            effects: vec![],
        };
        assert!(compare(&a, &b).is_ok());
        assert!(compare(&a, &returned(vec![])).is_err());
    }

    #[test]
    fn values_compare_with_nans_equal() {
        let a = returned(vec![Value::List(vec![Value::F64(f64::NAN)])]);
        let b = returned(vec![Value::List(vec![Value::F64(-f64::NAN)])]);
        assert!(compare(&a, &b).is_ok());
        assert!(compare(&a, &returned(vec![Value::List(vec![Value::F64(1.0)])])).is_err());
    }

    #[test]
    fn effects_must_match() {
        let mut a = returned(vec![]);
        a.effects.push(Effect::Host("log(\"x\")".into()));
        assert!(compare(&a, &returned(vec![])).is_err());
    }

    #[test]
    fn long_values_are_abbreviated() {
        let long = "x".repeat(500);
        let shown = abbreviate(&long);
        assert!(shown.contains("500 bytes"));
        assert_eq!(abbreviate("short"), "short");
    }
}
