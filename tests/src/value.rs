//! A runtime-independent component value, its WAVE text, and equality for
//! differential comparison.
//!
//! Owns: [`Value`], the structured form every runner turns its results into;
//! [`Value::equivalent`], which treats every NaN as equal to every NaN; and
//! the WAVE writer (same text as `wasm-wave`'s writer, plus a spelling for
//! resource handles, which WAVE has none for). Converting from a particular
//! runtime's values is left to that runtime's runner.

use std::fmt::{self, Write};

/// One component-model value, as observed at the component boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    S8(i8),
    U8(u8),
    S16(i16),
    U16(u16),
    S32(i32),
    U32(u32),
    S64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Char(char),
    String(String),
    List(Vec<Value>),
    Record(Vec<(String, Value)>),
    Tuple(Vec<Value>),
    Variant(String, Option<Box<Value>>),
    Enum(String),
    Option(Option<Box<Value>>),
    Result(Result<Option<Box<Value>>, Option<Box<Value>>>),
    Flags(Vec<String>),
    /// A resource handle. Handles have no value of their own: the label is
    /// what the invocation bound it to (`$name`), or `own`/`borrow`.
    Handle(String),
}

impl Value {
    /// Whether two values are the same for differential testing: structural
    /// equality, except that any NaN equals any NaN (payloads and signs are
    /// not compared) and flags compare as sets.
    pub fn equivalent(&self, other: &Value) -> bool {
        use Value as V;
        match (self, other) {
            (V::F32(a), V::F32(b)) => (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits(),
            (V::F64(a), V::F64(b)) => (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits(),
            (V::List(a), V::List(b)) | (V::Tuple(a), V::Tuple(b)) => all_equivalent(a, b),
            (V::Record(a), V::Record(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((na, va), (nb, vb))| na == nb && va.equivalent(vb))
            }
            (V::Variant(ca, pa), V::Variant(cb, pb)) => ca == cb && boxed_equivalent(pa, pb),
            (V::Option(a), V::Option(b)) => boxed_equivalent(a, b),
            (V::Result(Ok(a)), V::Result(Ok(b))) | (V::Result(Err(a)), V::Result(Err(b))) => {
                boxed_equivalent(a, b)
            }
            (V::Flags(a), V::Flags(b)) => {
                let mut a = a.clone();
                let mut b = b.clone();
                a.sort();
                b.sort();
                a == b
            }
            _ => self == other,
        }
    }

    /// The WAVE text of this value.
    pub fn to_wave(&self) -> String {
        self.to_string()
    }
}

fn all_equivalent(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equivalent(y))
}

fn boxed_equivalent(a: &Option<Box<Value>>, b: &Option<Box<Value>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.equivalent(b),
        (None, None) => true,
        _ => false,
    }
}

/// WAVE keywords; a case or field label spelled like one is written with a
/// leading `%`.
const KEYWORDS: [&str; 8] = ["true", "false", "inf", "nan", "some", "none", "ok", "err"];

fn write_label(f: &mut fmt::Formatter<'_>, label: &str) -> fmt::Result {
    if KEYWORDS.contains(&label) {
        f.write_char('%')?;
    }
    f.write_str(label)
}

/// Writes one character of a string or char literal, escaped as WAVE reads it.
fn write_escaped(f: &mut fmt::Formatter<'_>, ch: char) -> fmt::Result {
    match ch {
        '\\' | '"' | '\'' | '\t' | '\r' | '\n' => write!(f, "{}", ch.escape_default()),
        c if c.is_control() => write!(f, "{}", c.escape_unicode()),
        c => write!(f, "{}", c.escape_debug()),
    }
}

fn write_float(f: &mut fmt::Formatter<'_>, is_nan: bool, shown: &dyn fmt::Display) -> fmt::Result {
    if is_nan {
        f.write_str("nan")
    } else {
        write!(f, "{shown}")
    }
}

fn write_sequence(
    f: &mut fmt::Formatter<'_>,
    open: &str,
    items: &[Value],
    close: &str,
) -> fmt::Result {
    f.write_str(open)?;
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(close)
}

fn write_payload(f: &mut fmt::Formatter<'_>, payload: &Option<Box<Value>>) -> fmt::Result {
    match payload {
        Some(inner) => write!(f, "({inner})"),
        None => Ok(()),
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::S8(n) => write!(f, "{n}"),
            Value::U8(n) => write!(f, "{n}"),
            Value::S16(n) => write!(f, "{n}"),
            Value::U16(n) => write!(f, "{n}"),
            Value::S32(n) => write!(f, "{n}"),
            Value::U32(n) => write!(f, "{n}"),
            Value::S64(n) => write!(f, "{n}"),
            Value::U64(n) => write!(f, "{n}"),
            Value::F32(x) => write_float(f, x.is_nan(), x),
            Value::F64(x) => write_float(f, x.is_nan(), x),
            Value::Char(c) => {
                f.write_char('\'')?;
                write_escaped(f, *c)?;
                f.write_char('\'')
            }
            Value::String(s) => {
                f.write_char('"')?;
                for ch in s.chars() {
                    write_escaped(f, ch)?;
                }
                f.write_char('"')
            }
            Value::List(items) => write_sequence(f, "[", items, "]"),
            Value::Tuple(items) => write_sequence(f, "(", items, ")"),
            Value::Record(fields) => {
                // Like wasm-wave: fields holding `none` are left out.
                f.write_char('{')?;
                let mut written = 0;
                for (name, field) in fields {
                    if matches!(field, Value::Option(None)) {
                        continue;
                    }
                    if written > 0 {
                        f.write_str(", ")?;
                    }
                    // Field names are written bare, keywords included, as wasm-wave does.
                    write!(f, "{name}: {field}")?;
                    written += 1;
                }
                if written == 0 {
                    f.write_char(':')?;
                }
                f.write_char('}')
            }
            Value::Variant(case, payload) => {
                write_label(f, case)?;
                write_payload(f, payload)
            }
            Value::Enum(case) => write_label(f, case),
            Value::Option(Some(inner)) => write!(f, "some({inner})"),
            Value::Option(None) => f.write_str("none"),
            Value::Result(Ok(payload)) => {
                f.write_str("ok")?;
                write_payload(f, payload)
            }
            Value::Result(Err(payload)) => {
                f.write_str("err")?;
                write_payload(f, payload)
            }
            Value::Flags(names) => {
                f.write_char('{')?;
                for (index, name) in names.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(name)?;
                }
                f.write_char('}')
            }
            Value::Handle(label) => f.write_str(label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Value;

    #[test]
    fn nans_compare_equal_whatever_their_payload() {
        let quiet = Value::F32(f32::NAN);
        let payload = Value::F32(f32::from_bits(0x7fc0_1234));
        assert!(quiet.equivalent(&payload));
        assert!(!quiet.equivalent(&Value::F32(0.0)));
        assert!(!Value::F64(0.0).equivalent(&Value::F64(-0.0)));
    }

    #[test]
    fn writes_wave_text() {
        let value = Value::Record(vec![
            ("name".into(), Value::String("a \"q\"\n".into())),
            ("missing".into(), Value::Option(None)),
            ("ok".into(), Value::Result(Err(None))),
            ("c".into(), Value::Char('\'')),
            (
                "xs".into(),
                Value::List(vec![Value::F64(f64::NAN), Value::F32(f32::INFINITY)]),
            ),
        ]);
        assert_eq!(
            value.to_wave(),
            r#"{name: "a \"q\"\n", ok: err, c: '\'', xs: [nan, inf]}"#
        );
        assert_eq!(Value::Record(vec![]).to_wave(), "{:}");
        assert_eq!(Value::Variant("none".into(), None).to_wave(), "%none");
    }
}
