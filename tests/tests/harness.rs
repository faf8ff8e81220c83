//! The harness catches what it is meant to catch: a runner that wraps the
//! reference runner but changes one thing must fail `compare`, and the
//! unchanged reference must agree with itself.

use anyhow::{Result, bail};
use karmem_tests::fixtures::{guest_variants, invocations};
use karmem_tests::harness::{Completion, Effect, Outcome, Runner, compare, run_all};
use karmem_tests::invocation::Invocation;
use karmem_tests::reference::ReferenceRunner;
use karmem_tests::value::Value;

/// How the wrapped runner spoils its outcomes.
#[derive(Debug, Clone, Copy)]
enum Spoil {
    Nothing,
    /// Adds one to every `u32` result.
    OffByOne,
    /// Drops every host effect.
    ForgetEffects,
    /// Turns every returned call into a trap.
    Trap,
}

struct SpoilingRunner {
    inner: ReferenceRunner,
    spoil: Spoil,
}

impl Runner for SpoilingRunner {
    fn invoke(&mut self, invocation: &Invocation) -> Result<Outcome> {
        let mut outcome = self.inner.invoke(invocation)?;
        match self.spoil {
            Spoil::Nothing => {}
            Spoil::OffByOne => {
                if let Completion::Returned(values) = &mut outcome.completion {
                    for value in values {
                        if let Value::U32(n) = value {
                            *n = n.wrapping_add(1);
                        }
                    }
                }
            }
            Spoil::ForgetEffects => outcome.effects.retain(|e| !matches!(e, Effect::Host(_))),
            Spoil::Trap => {
                if matches!(outcome.completion, Completion::Returned(_)) {
                    outcome.completion = Completion::Trapped("spoiled".into());
                }
            }
        }
        Ok(outcome)
    }
}

/// How many of the `basics` outcomes a spoiled runner gets wrong.
fn disagreements(spoil: Spoil) -> Result<usize> {
    let Some(fixture) = guest_variants("basics")?.into_iter().next() else {
        bail!("no `basics` component built");
    };
    let calls = invocations("basics")?;
    let mut reference = ReferenceRunner::from_file(&fixture.path)?;
    let mut candidate = SpoilingRunner {
        inner: ReferenceRunner::from_file(&fixture.path)?,
        spoil,
    };
    let expected = run_all(&mut reference, &calls)?;
    let actual = run_all(&mut candidate, &calls)?;
    Ok(expected
        .iter()
        .zip(&actual)
        .filter(|((_, a), (_, b))| compare(a, b).is_err())
        .count())
}

#[test]
fn reference_agrees_with_itself() -> Result<()> {
    assert_eq!(disagreements(Spoil::Nothing)?, 0);
    Ok(())
}

#[test]
fn wrong_values_are_caught() -> Result<()> {
    // `add` twice returns a u32 in basics.invocations.
    assert_eq!(disagreements(Spoil::OffByOne)?, 2);
    Ok(())
}

#[test]
fn missing_host_effects_are_caught() -> Result<()> {
    // Three `greet` calls log through the host.
    assert_eq!(disagreements(Spoil::ForgetEffects)?, 3);
    Ok(())
}

#[test]
fn traps_are_caught() -> Result<()> {
    let calls = invocations("basics")?.len();
    assert_eq!(disagreements(Spoil::Trap)?, calls);
    Ok(())
}
