//! The KarmemIDL lexer: source text to tokens with byte spans.
//!
//! Owns: token kinds, comments (`//` dropped, `///` kept as doc tokens),
//! literal escapes and number syntax. Keywords are contextual, so every word
//! is an [`Token::Ident`]; the parser decides what a word means where it stands.

use crate::ast::Span;
use crate::error::{Error, ErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A word: a name or a contextual keyword. May contain inner `-` (kebab-case).
    Ident(String),
    /// An unsigned integer; a minus sign is a separate token.
    Int(u128),
    Float(f64),
    Str(String),
    Char(char),
    /// One `///` line, without the slashes and one leading space.
    Doc(String),
    /// A semver version after `@` in a package header, e.g. `0.2.6`.
    Version(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Lt,
    Gt,
    Colon,
    Semi,
    Comma,
    Eq,
    At,
    Hash,
    Arrow,
    Minus,
    Eof,
}

impl Token {
    /// How the token reads in an "expected ..., found ..." message.
    pub fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("`{s}`"),
            Token::Int(n) => format!("integer `{n}`"),
            Token::Float(f) => format!("number `{f:?}`"),
            Token::Str(_) => "a string literal".to_string(),
            Token::Char(_) => "a character literal".to_string(),
            Token::Doc(_) => "a doc comment".to_string(),
            Token::Version(v) => format!("version `{v}`"),
            Token::Eof => "end of file".to_string(),
            other => format!("`{}`", other.punct_text()),
        }
    }

    fn punct_text(&self) -> &'static str {
        match self {
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::Lt => "<",
            Token::Gt => ">",
            Token::Colon => ":",
            Token::Semi => ";",
            Token::Comma => ",",
            Token::Eq => "=",
            Token::At => "@",
            Token::Hash => "#",
            Token::Arrow => "->",
            Token::Minus => "-",
            _ => "?",
        }
    }
}

/// A token and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub span: Span,
}

/// Splits `source` into tokens, ending with [`Token::Eof`].
pub fn tokenize(source: &str) -> Result<Vec<Spanned>, Error> {
    if source.len() > u32::MAX as usize {
        return Err(Error::new(
            ErrorKind::BadNumber("file larger than 4 GiB".into()),
            Span::DUMMY,
        ));
    }
    let mut lexer = Lexer {
        source,
        pos: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    source: &'a str,
    pos: usize,
    tokens: Vec<Spanned>,
}

pub fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.source.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn peek_at(&self, skip: usize) -> Option<char> {
        self.source
            .get(self.pos..)
            .and_then(|s| s.chars().nth(skip))
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn span_from(&self, start: usize) -> Span {
        Span::new(start as u32, self.pos as u32)
    }

    fn push(&mut self, token: Token, start: usize) {
        let span = self.span_from(start);
        self.tokens.push(Spanned { token, span });
    }

    fn run(&mut self) -> Result<(), Error> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '/' if self.peek_at(1) == Some('/') => self.comment(start),
                '/' if self.peek_at(1) == Some('*') => self.block_comment(start)?,
                c if is_ident_start(c) => self.ident(start),
                c if c.is_ascii_digit() => self.number(start)?,
                '"' => self.string(start)?,
                '\'' => self.char_literal(start)?,
                '-' if self.peek_at(1) == Some('>') => {
                    self.pos += 2;
                    self.push(Token::Arrow, start);
                }
                '@' => {
                    self.bump();
                    self.push(Token::At, start);
                    self.maybe_version();
                }
                _ => {
                    let token = match c {
                        '{' => Token::LBrace,
                        '}' => Token::RBrace,
                        '(' => Token::LParen,
                        ')' => Token::RParen,
                        '[' => Token::LBracket,
                        ']' => Token::RBracket,
                        '<' => Token::Lt,
                        '>' => Token::Gt,
                        ':' => Token::Colon,
                        ';' => Token::Semi,
                        ',' => Token::Comma,
                        '=' => Token::Eq,
                        '#' => Token::Hash,
                        '-' => Token::Minus,
                        other => {
                            self.bump();
                            return Err(Error::new(
                                ErrorKind::UnexpectedChar(other),
                                self.span_from(start),
                            ));
                        }
                    };
                    self.bump();
                    self.push(token, start);
                }
            }
        }
        let end = self.pos;
        self.push(Token::Eof, end);
        Ok(())
    }

    fn rest_of_line(&mut self) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
        self.source.get(start..self.pos).unwrap_or("")
    }

    fn comment(&mut self, start: usize) {
        self.pos += 2;
        if self.peek() == Some('/') {
            self.bump();
            let line = self.rest_of_line().trim_end_matches('\r');
            let text = line.strip_prefix(' ').unwrap_or(line).to_string();
            self.push(Token::Doc(text), start);
        } else {
            self.rest_of_line();
        }
    }

    fn block_comment(&mut self, start: usize) -> Result<(), Error> {
        self.pos += 2;
        let mut depth = 1;
        while depth > 0 {
            match self.bump() {
                Some('*') if self.peek() == Some('/') => {
                    self.bump();
                    depth -= 1;
                }
                Some('/') if self.peek() == Some('*') => {
                    self.bump();
                    depth += 1;
                }
                Some(_) => {}
                None => {
                    return Err(Error::new(
                        ErrorKind::Expected {
                            expected: "`*/` closing this comment".into(),
                            found: "end of file".into(),
                        },
                        Span::new(start as u32, start as u32 + 2),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Words are ASCII letters, digits and `_`, with single inner hyphens
    /// (`output-stream`) so WIT names carry over unchanged.
    fn ident(&mut self, start: usize) {
        loop {
            match self.peek() {
                Some(c) if is_ident_continue(c) => {
                    self.bump();
                }
                Some('-') if self.peek_at(1).is_some_and(|c| c.is_ascii_alphanumeric()) => {
                    self.bump();
                }
                _ => break,
            }
        }
        let word = self.source.get(start..self.pos).unwrap_or("").to_string();
        self.push(Token::Ident(word), start);
    }

    fn digits(&mut self, radix: u32) {
        while let Some(c) = self.peek() {
            if c.is_digit(radix) || c == '_' {
                self.bump();
            } else {
                break;
            }
        }
    }

    fn number(&mut self, start: usize) -> Result<(), Error> {
        let bad = |lexer: &Self| {
            let text = lexer.source.get(start..lexer.pos).unwrap_or("").to_string();
            Error::new(ErrorKind::BadNumber(text), lexer.span_from(start))
        };
        if self.peek() == Some('0') && matches!(self.peek_at(1), Some('x' | 'X')) {
            self.pos += 2;
            let digits_start = self.pos;
            self.digits(16);
            let text: String = self
                .source
                .get(digits_start..self.pos)
                .unwrap_or("")
                .replace('_', "");
            self.reject_trailing_word(start)?;
            let value = u128::from_str_radix(&text, 16).map_err(|_| bad(self))?;
            self.push(Token::Int(value), start);
            return Ok(());
        }
        self.digits(10);
        let mut is_float = false;
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            self.bump();
            self.digits(10);
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
            if self.peek_at(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                self.pos += 1 + sign;
                self.digits(10);
            }
        }
        self.reject_trailing_word(start)?;
        let text: String = self
            .source
            .get(start..self.pos)
            .unwrap_or("")
            .replace('_', "");
        let token = if is_float {
            let value: f64 = text.parse().map_err(|_| bad(self))?;
            if !value.is_finite() {
                return Err(bad(self));
            }
            Token::Float(value)
        } else {
            Token::Int(text.parse().map_err(|_| bad(self))?)
        };
        self.push(token, start);
        Ok(())
    }

    /// `12abc` is one bad number, not a number and a word.
    fn reject_trailing_word(&mut self, start: usize) -> Result<(), Error> {
        if self.peek().is_some_and(is_ident_continue) {
            while self.peek().is_some_and(is_ident_continue) {
                self.bump();
            }
            let text = self.source.get(start..self.pos).unwrap_or("").to_string();
            return Err(Error::new(
                ErrorKind::BadNumber(text),
                self.span_from(start),
            ));
        }
        Ok(())
    }

    /// After `@`, a digit starts a version (`@0.2.6`), lexed as one token.
    fn maybe_version(&mut self) {
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return;
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        {
            self.bump();
        }
        let text = self.source.get(start..self.pos).unwrap_or("").to_string();
        self.push(Token::Version(text), start);
    }

    fn escape(&mut self, quote_start: usize) -> Result<char, Error> {
        let start = self.pos - 1;
        let c = match self.bump() {
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('0') => '\0',
            Some('\\') => '\\',
            Some('"') => '"',
            Some('\'') => '\'',
            Some('u') if self.peek() == Some('{') => {
                self.bump();
                let digits_start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                    self.bump();
                }
                let digits = self
                    .source
                    .get(digits_start..self.pos)
                    .unwrap_or("")
                    .to_string();
                if self.peek() == Some('}') {
                    self.bump();
                }
                let text = self.source.get(start..self.pos).unwrap_or("").to_string();
                let value = u32::from_str_radix(&digits, 16)
                    .ok()
                    .and_then(char::from_u32);
                return value
                    .ok_or_else(|| Error::new(ErrorKind::BadEscape(text), self.span_from(start)));
            }
            None => {
                let kind = if self
                    .source
                    .get(quote_start..)
                    .is_some_and(|s| s.starts_with('"'))
                {
                    ErrorKind::UnterminatedString
                } else {
                    ErrorKind::UnterminatedChar
                };
                return Err(Error::new(
                    kind,
                    Span::new(quote_start as u32, quote_start as u32 + 1),
                ));
            }
            Some(_) => {
                let text = self.source.get(start..self.pos).unwrap_or("").to_string();
                return Err(Error::new(
                    ErrorKind::BadEscape(text),
                    self.span_from(start),
                ));
            }
        };
        Ok(c)
    }

    fn string(&mut self, start: usize) -> Result<(), Error> {
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                Some('"') => break,
                Some('\\') => value.push(self.escape(start)?),
                Some('\n') | None => {
                    return Err(Error::new(
                        ErrorKind::UnterminatedString,
                        Span::new(start as u32, start as u32 + 1),
                    ));
                }
                Some(c) => value.push(c),
            }
        }
        self.push(Token::Str(value), start);
        Ok(())
    }

    fn char_literal(&mut self, start: usize) -> Result<(), Error> {
        self.bump();
        let unterminated = || {
            Error::new(
                ErrorKind::UnterminatedChar,
                Span::new(start as u32, start as u32 + 1),
            )
        };
        let c = match self.bump() {
            Some('\\') => self.escape(start)?,
            Some('\n' | '\'') | None => return Err(unterminated()),
            Some(c) => c,
        };
        if self.bump() != Some('\'') {
            return Err(unterminated());
        }
        self.push(Token::Char(c), start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<Token> {
        tokenize(source)
            .map(|t| t.into_iter().map(|s| s.token).collect())
            .unwrap_or_default()
    }

    #[test]
    fn words_numbers_and_punctuation() {
        assert_eq!(
            kinds("a-b: [4]u8 #string = -0x1F; // gone\n/// kept"),
            vec![
                Token::Ident("a-b".into()),
                Token::Colon,
                Token::LBracket,
                Token::Int(4),
                Token::RBracket,
                Token::Ident("u8".into()),
                Token::Hash,
                Token::Ident("string".into()),
                Token::Eq,
                Token::Minus,
                Token::Int(31),
                Token::Semi,
                Token::Doc("kept".into()),
                Token::Eof,
            ]
        );
    }

    #[test]
    fn arrow_is_not_part_of_a_word() {
        assert_eq!(
            kinds("(a)->(b)"),
            vec![
                Token::LParen,
                Token::Ident("a".into()),
                Token::RParen,
                Token::Arrow,
                Token::LParen,
                Token::Ident("b".into()),
                Token::RParen,
                Token::Eof,
            ]
        );
    }

    #[test]
    fn versions_floats_and_escapes() {
        assert_eq!(
            kinds("@1.2.3-rc.1 1.5e3 '\\u{1F600}' \"a\\\"b\""),
            vec![
                Token::At,
                Token::Version("1.2.3-rc.1".into()),
                Token::Float(1500.0),
                Token::Char('\u{1F600}'),
                Token::Str("a\"b".into()),
                Token::Eof,
            ]
        );
    }

    #[test]
    fn errors_point_at_the_problem() {
        let err = tokenize("a $").err();
        assert_eq!(err.map(|e| e.span), Some(Span::new(2, 3)));
        let err = tokenize("x = \"abc").err();
        assert_eq!(
            err.map(|e| (e.kind, e.span)),
            Some((ErrorKind::UnterminatedString, Span::new(4, 5)))
        );
        assert!(matches!(
            tokenize("12ab").map_err(|e| e.kind),
            Err(ErrorKind::BadNumber(_))
        ));
    }
}
