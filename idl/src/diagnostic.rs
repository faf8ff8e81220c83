//! Rendering errors as source snippets with a caret, rustc style:
//!
//! ```text
//! error: unknown type `pont`
//!  --> shapes.km:3:9
//!   |
//! 3 |     at: pont;
//!   |         ^^^^
//! ```
//!
//! Owns: line/column computation and the snippet layout. The errors themselves
//! are `error`'s.

use std::fmt::{self, Write as _};

use crate::ast::Span;
use crate::error::Error;

/// Errors rendered against their source. `Display` prints the first headline
/// without the `error: ` prefix (the CLI adds it) and every later one with it,
/// so `error: {diagnostics}` reads uniformly.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    errors: Vec<Error>,
    rendered: String,
}

impl Diagnostics {
    pub fn new(errors: Vec<Error>, path: &str, source: &str) -> Diagnostics {
        let mut rendered = String::new();
        let lines = LineStarts::new(source);
        for (i, error) in errors.iter().enumerate() {
            if i > 0 {
                rendered.push_str("\n\nerror: ");
            }
            render_one(&mut rendered, error, path, source, &lines);
        }
        Diagnostics { errors, rendered }
    }

    pub fn errors(&self) -> &[Error] {
        &self.errors
    }

    /// The full text as the CLI prints it, `error: ` prefix included.
    pub fn to_report(&self) -> String {
        format!("error: {}", self.rendered)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

impl std::error::Error for Diagnostics {}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: u32) -> (usize, usize) {
    let offset = clamp_to_char_boundary(source, offset as usize);
    let before = source.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

fn clamp_to_char_boundary(source: &str, offset: usize) -> usize {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Byte offsets where each line starts, so rendering many errors stays linear.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(source: &str) -> LineStarts {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineStarts(starts)
    }

    /// 1-based line number and the offset its line starts at.
    fn line_of(&self, offset: usize) -> (usize, usize) {
        let line = self.0.partition_point(|&s| s <= offset).max(1);
        (line, self.0.get(line - 1).copied().unwrap_or(0))
    }
}

fn render_one(out: &mut String, error: &Error, path: &str, source: &str, lines: &LineStarts) {
    let _ = write!(out, "{}", error.kind);
    snippet(out, "-->", error.span, path, source, None, lines);
    if let Some((span, note)) = &error.note {
        snippet(out, ":::", *span, path, source, Some(note), lines);
    }
}

/// Narrows `span` to its meaningful text: without leading blanks and `=`, or
/// trailing blanks and `;` (a value span starts right after a type or name).
fn trim(span: Span, source: &str) -> Span {
    let start = clamp_to_char_boundary(source, span.start as usize);
    let end = clamp_to_char_boundary(source, span.end as usize).max(start);
    let Some(text) = source.get(start..end) else {
        return span;
    };
    let lead = text.len()
        - text
            .trim_start_matches(|c: char| c.is_whitespace() || c == '=')
            .len();
    let inner = text.get(lead..).unwrap_or("");
    let trimmed = inner.trim_end_matches(|c: char| c.is_whitespace() || c == ';');
    if trimmed.is_empty() {
        return span;
    }
    Span::new((start + lead) as u32, (start + lead + trimmed.len()) as u32)
}

fn snippet(
    out: &mut String,
    arrow: &str,
    span: Span,
    path: &str,
    source: &str,
    label: Option<&str>,
    lines: &LineStarts,
) {
    let span = trim(span, source);
    let start = clamp_to_char_boundary(source, span.start as usize);
    let (line, line_start) = lines.line_of(start);
    let col = source
        .get(line_start..start)
        .map_or(0, |s| s.chars().count())
        + 1;
    let line_end = source
        .get(start..)
        .and_then(|s| s.find('\n'))
        .map_or(source.len(), |i| start + i);
    let text = source
        .get(line_start..line_end)
        .unwrap_or("")
        .trim_end_matches('\r');
    // The caret covers the span, but no further than the end of its first line.
    let end = clamp_to_char_boundary(source, (span.end as usize).max(start)).min(line_end);
    let width = source
        .get(start..end)
        .map_or(0, |s| s.chars().count())
        .max(1);
    let gutter = line.to_string().len();
    let pad = " ".repeat(gutter);
    let (shown, caret_col) = window(text, col - 1);
    let width = width.min(shown.chars().count().saturating_sub(caret_col).max(1));
    let _ = write!(
        out,
        "\n{pad}{arrow} {path}:{line}:{col}\n{pad} |\n{line} | {shown}\n{pad} | "
    );
    // Tabs before the caret keep their width so the caret lines up.
    for c in shown.chars().take(caret_col) {
        out.push(if c == '\t' { '\t' } else { ' ' });
    }
    out.push_str(&"^".repeat(width));
    if let Some(label) = label {
        let _ = write!(out, " {label}");
    }
}

/// Lines longer than this many characters are cut to a window around the caret.
const MAX_SHOWN: usize = 120;
/// How many characters of context the window keeps before the caret.
const CONTEXT_BEFORE: usize = 40;

/// The part of `text` to print and the caret's character column within it.
/// A long line (generated or minified input) is cut to `MAX_SHOWN` characters
/// around the caret, with `...` marking what was left out.
fn window(text: &str, caret: usize) -> (String, usize) {
    let total = text.chars().count();
    if total <= MAX_SHOWN {
        return (text.to_string(), caret);
    }
    let first = caret.saturating_sub(CONTEXT_BEFORE);
    let last = (first + MAX_SHOWN).min(total);
    let mut shown = String::new();
    let mut caret_col = caret - first;
    if first > 0 {
        shown.push_str("...");
        caret_col += 3;
    }
    shown.extend(text.chars().skip(first).take(last - first));
    if last < total {
        shown.push_str("...");
    }
    (shown, caret_col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(source: &str) -> String {
        match crate::load(source, "t.km") {
            Ok(_) => String::new(),
            Err(d) => d.to_report(),
        }
    }

    #[test]
    fn long_lines_are_cut_around_the_caret() {
        let fields: String = (0..300).map(|i| format!("f{i:03}: u8; ")).collect();
        let source = format!("struct a (dynamic) {{ {fields}x: pont; }}");
        let report = report(&source);
        let longest = report.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(longest < MAX_SHOWN + 20, "{report}");
        assert!(report.contains("...") && report.contains("f299: u8; x: pont; }"), "{report}");
        let text = report.lines().nth(3).unwrap_or("");
        let caret = report.lines().nth(4).unwrap_or("");
        let at = caret.find('^').unwrap_or(0);
        assert_eq!(text.get(at..at + 4), Some("pont"), "{report}");
    }

    #[test]
    fn caret_counts_characters_and_keeps_tabs() {
        assert_eq!(
            report("struct a (dynamic) {\n\tx: é;\n}"),
            "error: unexpected character `é`\n --> t.km:2:5\n  |\n2 | \tx: é;\n  | \t   ^"
        );
    }

    #[test]
    fn end_of_file_points_past_the_last_character() {
        assert_eq!(
            report("struct a (dynamic) {"),
            "error: expected a field name or `}`, found end of file\n --> t.km:1:21\n  |\n1 | struct a (dynamic) {\n  |                     ^"
        );
        assert_eq!(report(""), "");
        assert_eq!(
            report("/// lonely"),
            "error: expected an item after the doc comment, found end of file\n --> t.km:1:11\n  |\n1 | /// lonely\n  |           ^"
        );
    }

    #[test]
    fn gutter_widens_with_the_line_number() {
        let source = format!("{}struct a (dynamic) {{ x: y; }}", "\n".repeat(120));
        let text = report(&source);
        assert!(
            text.contains(&format!(
                "\n   --> t.km:121:25\n    |\n121 | struct a (dynamic) {{ x: y; }}\n    | {}^",
                " ".repeat(24)
            )),
            "{text}"
        );
    }

    #[test]
    fn line_col_is_one_based_in_characters() {
        assert_eq!(line_col("ab\nçd", 5), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
