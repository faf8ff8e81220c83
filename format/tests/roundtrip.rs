//! Must-show: for random schemas and random values, encode → validate →
//! decode gives back the input (floats compared by bits, NaNs included), and
//! WAVE text round-trips too.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod common;

use common::random::{self as gen_random, Rng};
use karmem_format::layout::Layout;
use karmem_format::value::{decode, encode};
use karmem_format::wave::{self, ValueType};
use karmem_format::{Limits, validate};
use proptest::prelude::*;
use std::sync::Arc;

fn round_trip(seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let file = gen_random::schema(&mut rng);
    let schema = match karmem_idl::resolve(file.clone()) {
        Ok(s) => s,
        Err(e) => return Err(TestCaseError::fail(format!("generated schema rejected: {e:?}\n{}", karmem_idl::print(&file)))),
    };
    let layout = match Layout::new(&schema) {
        Ok(l) => Arc::new(l),
        // Inline recursion is the resolver's to reject; anything else is a bug.
        Err(e) => return Err(TestCaseError::fail(format!("{e}\n{}", karmem_idl::print(&file)))),
    };
    let root = layout.named("root").ok_or_else(|| TestCaseError::fail("no root"))?;
    for _ in 0..4 {
        let value = gen_random::value(&layout, root, &mut rng, 0);
        let bytes = encode(&layout, root, &value).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        
        validate(&bytes, &layout, root, &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e}\nschema:\n{}\nvalue: {value:?}", karmem_idl::print(&file))))?;
        let back = decode(&layout, root, &bytes, &Limits::default()).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert!(back.bit_eq(&value), "decoded {:?}\nexpected {:?}\nschema:\n{}", back, value, karmem_idl::print(&file));
        // WAVE text: print, parse, compare (NaN payloads are not kept by text).
        if !has_nan(&value) {
            let text = wave::print(&value).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            let parsed = wave::parse(&ValueType::new(layout.clone(), root), &text)
                .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert!(parsed.bit_eq(&value), "WAVE {} parsed as {:?}", text, parsed);
        }
    }
    Ok(())
}

fn has_nan(v: &karmem_format::Value) -> bool {
    use karmem_format::Value::*;
    match v {
        F32(f) => f.is_nan(),
        F64(f) => f.is_nan(),
        List(items) => items.iter().any(has_nan),
        Map(entries) => entries.iter().any(|(k, v)| has_nan(k) || has_nan(v)),
        Record(fields) => fields.iter().any(|(_, v)| has_nan(v)),
        Variant(_, Some(p)) | Option(Some(p)) | Result(Ok(Some(p))) | Result(Err(Some(p))) => has_nan(p),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    #[test]
    fn encode_validate_decode_is_identity(seed in any::<u64>()) {
        round_trip(seed)?;
    }
}
