//! The `fixtures/<name>.invocations` file format and its parser.
//!
//! Owns: splitting a file into [`Invocation`]s and a call's argument list
//! into one WAVE text per argument. Typing the arguments is left to each
//! runner, which knows the function's parameter types (the reference runner
//! parses them with `wasm-wave`).
//!
//! One invocation per line; blank lines and lines starting with `#` are
//! skipped:
//!
//! ```text
//! # a function exported at the root:
//! add(1, 2)
//! # <interface>#<function>:
//! karmem:fixtures/basics#shout("hi")
//! $c = karmem:fixtures/resources#[constructor]counter(5)
//! karmem:fixtures/resources#[method]counter.bump($c, 2)
//! drop $c
//! karmem:fixtures/edges#checksum(@repeat("ab", 70000))
//! ```
//!
//! `$name = call(...)` binds the result (typically an `own` handle) for later
//! lines; `$name` as an argument passes that handle. Two generators keep big
//! inputs readable and expand to plain WAVE before a runner sees them:
//! `@repeat("text", n)` is a string of `text` repeated `n` times, and
//! `@bytes(n)` is a `list<u8>` counting `0, 1, .., 255, 0, ..` of length `n`.

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// One line of an invocations file.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// 1-based line number in the file it came from.
    pub line: usize,
    /// The line as written, for snapshots and messages.
    pub text: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Call(Call),
    /// `drop $name`: drop an owned handle bound earlier.
    Drop(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `$name =` before the call, without the `$`.
    pub bind: Option<String>,
    /// The exported interface the function lives in (`ns:pkg/iface`, with a
    /// version if the component exports one), or `None` for a root export.
    pub interface: Option<String>,
    /// The function's name within the interface, e.g. `add` or
    /// `[method]counter.bump`.
    pub function: String,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A value in WAVE text, generators already expanded.
    Wave(String),
    /// `$name`: a handle bound by an earlier line.
    Handle(String),
}

impl Call {
    /// `interface#function`, or just `function` for a root export.
    pub fn qualified_name(&self) -> String {
        match &self.interface {
            Some(interface) => format!("{interface}#{}", self.function),
            None => self.function.clone(),
        }
    }
}

/// Reads and parses an invocations file.
pub fn read_invocations(path: &Path) -> Result<Vec<Invocation>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
    parse_invocations(&text).with_context(|| format!("parsing `{}`", path.display()))
}

/// Parses the text of an invocations file.
pub fn parse_invocations(text: &str) -> Result<Vec<Invocation>> {
    let mut invocations = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let action = parse_action(trimmed).with_context(|| format!("line {line}: `{trimmed}`"))?;
        invocations.push(Invocation {
            line,
            text: trimmed.to_owned(),
            action,
        });
    }
    Ok(invocations)
}

fn parse_action(text: &str) -> Result<Action> {
    if let Some(rest) = text.strip_prefix("drop ") {
        let name = parse_handle_name(rest.trim())?;
        return Ok(Action::Drop(name));
    }
    let (bind, call_text) = match text.split_once('=') {
        Some((lhs, rhs)) if lhs.trim_start().starts_with('$') => {
            (Some(parse_handle_name(lhs.trim())?), rhs.trim())
        }
        _ => (None, text),
    };
    let open = call_text
        .find('(')
        .context("expected `function(arguments)`")?;
    let (path, rest) = call_text.split_at(open);
    let arg_text = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .context("the argument list must end the line with `)`")?;
    let path = path.trim();
    let (interface, function) = match path.rsplit_once('#') {
        Some((interface, function)) => (Some(interface.to_owned()), function.to_owned()),
        None => (None, path.to_owned()),
    };
    if function.is_empty() {
        bail!("missing function name");
    }
    let args = split_arguments(arg_text)?
        .into_iter()
        .map(|arg| parse_arg(&arg))
        .collect::<Result<Vec<_>>>()?;
    Ok(Action::Call(Call {
        bind,
        interface,
        function,
        args,
    }))
}

fn parse_handle_name(text: &str) -> Result<String> {
    let name = text
        .strip_prefix('$')
        .with_context(|| format!("expected `$name`, found `{text}`"))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("`{text}` is not a handle name (`$` then letters, digits, `_` or `-`)");
    }
    Ok(name.to_owned())
}

fn parse_arg(text: &str) -> Result<Arg> {
    if text.starts_with('$') {
        return Ok(Arg::Handle(parse_handle_name(text)?));
    }
    Ok(Arg::Wave(expand_generators(text)?))
}

/// Splits `a, [b, c], "d,e"` at the commas that are not nested in brackets
/// or inside string and char literals.
pub fn split_arguments(text: &str) -> Result<Vec<String>> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut depth: usize = 0;
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '"' | '\'' => {
                current.push(ch);
                copy_literal(ch, &mut chars, &mut current)?;
            }
            '(' | '[' | '{' => {
                depth += 1;
                current.push(ch);
            }
            ')' | ']' | '}' => {
                depth = depth
                    .checked_sub(1)
                    .with_context(|| format!("unbalanced `{ch}`"))?;
                current.push(ch);
            }
            ',' if depth == 0 => {
                args.push(finish_arg(&current)?);
                current.clear();
            }
            _ => current.push(ch),
        }
    }
    if depth != 0 {
        bail!("unclosed bracket in the argument list");
    }
    if !current.trim().is_empty() || !args.is_empty() {
        args.push(finish_arg(&current)?);
    }
    Ok(args)
}

fn finish_arg(text: &str) -> Result<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        bail!("empty argument");
    }
    Ok(trimmed.to_owned())
}

/// Copies a string or char literal up to and including its closing quote.
fn copy_literal(quote: char, chars: &mut std::str::Chars<'_>, out: &mut String) -> Result<()> {
    while let Some(ch) = chars.next() {
        out.push(ch);
        if ch == '\\' {
            let escaped = chars.next().context("a literal ends in `\\`")?;
            out.push(escaped);
        } else if ch == quote {
            return Ok(());
        }
    }
    bail!("unterminated {quote}literal{quote}")
}

/// The value of a WAVE string literal (`"..."` with WAVE's escapes), or
/// `None` if `text` is not exactly one string literal. Runners use it for
/// string arguments: `wasm-wave`'s lexer recurses per character in debug
/// builds and overflows the stack on literals of a few hundred KiB.
pub fn parse_string_literal(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(ch) = chars.next() {
        let unescaped = match ch {
            '"' => return None,
            '\\' => match chars.next()? {
                '\\' => '\\',
                '"' => '"',
                '\'' => '\'',
                't' => '\t',
                'n' => '\n',
                'r' => '\r',
                'u' => {
                    let rest = chars.as_str().strip_prefix('{')?;
                    let (hex, after) = rest.split_once('}')?;
                    let scalar = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                    chars = after.chars();
                    scalar
                }
                _ => return None,
            },
            other => other,
        };
        value.push(unescaped);
    }
    Some(value)
}

/// Expands `@repeat("text", n)` and `@bytes(n)` when they make up a whole
/// argument; any other text is returned as is.
fn expand_generators(text: &str) -> Result<String> {
    if let Some(inner) = generator_arguments(text, "@repeat")? {
        let [literal, count] = two_arguments(&inner, "@repeat")?;
        let unit = unquote_plain(&literal)?;
        let count = parse_count(&count)?;
        // The unit is re-used verbatim inside the literal: it was already
        // valid WAVE string content.
        let mut out = String::with_capacity(unit.len().saturating_mul(count).saturating_add(2));
        out.push('"');
        for _ in 0..count {
            out.push_str(unit);
        }
        out.push('"');
        return Ok(out);
    }
    if let Some(inner) = generator_arguments(text, "@bytes")? {
        let count = parse_count(inner.trim())?;
        let mut out = String::with_capacity(count.saturating_mul(5).saturating_add(2));
        out.push('[');
        for index in 0..count {
            if index > 0 {
                out.push_str(", ");
            }
            // Writing into a String cannot fail.
            let _ = write!(out, "{}", index % 256);
        }
        out.push(']');
        return Ok(out);
    }
    if text.starts_with('@') {
        bail!("unknown generator in `{text}`; expected `@repeat(\"text\", n)` or `@bytes(n)`");
    }
    Ok(text.to_owned())
}

fn generator_arguments(text: &str, name: &str) -> Result<Option<String>> {
    let Some(rest) = text.strip_prefix(name) else {
        return Ok(None);
    };
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .with_context(|| format!("`{name}` needs its arguments in parentheses"))?;
    Ok(Some(inner.to_owned()))
}

fn two_arguments(text: &str, name: &str) -> Result<[String; 2]> {
    let args = split_arguments(text)?;
    <[String; 2]>::try_from(args)
        .map_err(|found| anyhow::anyhow!("`{name}` takes 2 arguments, found {}", found.len()))
}

/// The content of a `"..."` literal, escapes left as written.
fn unquote_plain(literal: &str) -> Result<&str> {
    literal
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .with_context(|| format!("expected a string literal, found `{literal}`"))
}

fn parse_count(text: &str) -> Result<usize> {
    text.trim()
        .replace('_', "")
        .parse()
        .with_context(|| format!("expected a count, found `{text}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calls_bindings_and_drops() -> Result<()> {
        let parsed = parse_invocations(
            "# comment\n\nadd(1, 2)\n$c = a:b/c#[constructor]counter(\"x, y\", [1, 2])\n  drop $c\nf()\n",
        )?;
        assert_eq!(parsed.len(), 4);
        let Action::Call(first) = &parsed[0].action else {
            bail!("not a call")
        };
        assert_eq!(first.function, "add");
        assert_eq!(first.interface, None);
        assert_eq!(
            first.args,
            vec![Arg::Wave("1".into()), Arg::Wave("2".into())]
        );
        let Action::Call(second) = &parsed[1].action else {
            bail!("not a call")
        };
        assert_eq!(second.bind.as_deref(), Some("c"));
        assert_eq!(second.qualified_name(), "a:b/c#[constructor]counter");
        assert_eq!(
            second.args,
            vec![Arg::Wave("\"x, y\"".into()), Arg::Wave("[1, 2]".into())]
        );
        assert_eq!(parsed[2].action, Action::Drop("c".into()));
        assert_eq!(parsed[2].line, 5);
        let Action::Call(fourth) = &parsed[3].action else {
            bail!("not a call")
        };
        assert!(fourth.args.is_empty());
        Ok(())
    }

    #[test]
    fn expands_generators() -> Result<()> {
        let parsed = parse_invocations("f(@repeat(\"ab\", 3), @bytes(3), $h)")?;
        let Action::Call(call) = &parsed[0].action else {
            bail!("not a call")
        };
        assert_eq!(
            call.args,
            vec![
                Arg::Wave("\"ababab\"".into()),
                Arg::Wave("[0, 1, 2]".into()),
                Arg::Handle("h".into())
            ]
        );
        Ok(())
    }

    #[test]
    fn reads_string_literals() {
        let read = |text: &str| parse_string_literal(text);
        assert_eq!(
            read(r#""a\"b\n\u{1F980}""#).as_deref(),
            Some("a\"b\n\u{1F980}")
        );
        assert_eq!(read(r#""""#).as_deref(), Some(""));
        assert_eq!(read(r#""a" "b""#), None);
        assert_eq!(read("[1]"), None);
        assert_eq!(read(r#""\q""#), None);
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_invocations("f(1, 2").is_err());
        assert!(parse_invocations("f(1,, 2)").is_err());
        assert!(parse_invocations("f(\"open)").is_err());
        assert!(parse_invocations("f(@nope(1))").is_err());
        assert!(parse_invocations("drop c").is_err());
    }
}
