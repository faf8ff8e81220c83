//! The KarmemIDL parser: tokens to a [`File`], stopping at the first error.
//!
//! Owns: the grammar (docs/IDL.md gives it in EBNF). Names are not checked
//! here — that is the resolver's job — except that item names may not be
//! reserved type words, which would make the file ambiguous.

use crate::ast::*;
use crate::error::{Error, ErrorKind};
use crate::lexer::{Spanned, Token, tokenize};

/// Words that always mean a built-in type where a type is expected.
pub const RESERVED_TYPE_WORDS: [&str; 18] = [
    "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64", "bool", "char", "option",
    "result", "map", "own", "borrow", "_",
];

pub fn is_reserved_type_word(word: &str) -> bool {
    RESERVED_TYPE_WORDS.contains(&word)
}

/// Parses a whole file.
pub fn parse(source: &str) -> Result<File, Error> {
    let tokens = tokenize(source)?;
    let mut parser = Parser {
        source,
        tokens,
        pos: 0,
        depth: 0,
    };
    parser.file()
}

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Spanned>,
    pos: usize,
    /// Current nesting of types, bounded by [`MAX_TYPE_DEPTH`].
    depth: u32,
}

/// Deepest type nesting accepted (`[][]...u8`, `option<option<...>>`), so that
/// the parser, resolver and printer recurse a bounded number of times.
pub const MAX_TYPE_DEPTH: u32 = 100;

type PResult<T> = Result<T, Error>;

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).map_or(&Token::Eof, |t| &t.token)
    }

    fn peek_nth(&self, n: usize) -> &Token {
        self.tokens
            .get(self.pos + n)
            .map_or(&Token::Eof, |t| &t.token)
    }

    fn span(&self) -> Span {
        self.tokens
            .get(self.pos)
            .or_else(|| self.tokens.last())
            .map_or(Span::DUMMY, |t| t.span)
    }

    /// End of the most recently consumed token.
    fn prev_end(&self) -> u32 {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(0, |t| t.span.end)
    }

    fn since(&self, start: Span) -> Span {
        Span::new(start.start, self.prev_end().max(start.start))
    }

    /// Consumes the current token, moving it out: the parser never looks back
    /// at a consumed token's value (only at its span).
    fn bump(&mut self) -> Spanned {
        let Some(current) = self.tokens.get_mut(self.pos) else {
            return Spanned {
                token: Token::Eof,
                span: self.span(),
            };
        };
        // The final `Eof` stays in place so `peek` keeps seeing it.
        if current.token == Token::Eof {
            return current.clone();
        }
        self.pos += 1;
        Spanned {
            token: std::mem::replace(&mut current.token, Token::Eof),
            span: current.span,
        }
    }

    fn unexpected(&self, expected: impl Into<String>) -> Error {
        Error::new(
            ErrorKind::Expected {
                expected: expected.into(),
                found: self.peek().describe(),
            },
            self.span(),
        )
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == token {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: Token, expected: &str) -> PResult<Span> {
        if *self.peek() == token {
            return Ok(self.bump().span);
        }
        let mut error = self.unexpected(expected);
        // A terminator missing at the end of a line belongs after the last
        // token, not on the next line's first one.
        let end = self.prev_end();
        let between = self
            .source
            .get(end as usize..self.span().start as usize)
            .unwrap_or("");
        if matches!(
            token,
            Token::Semi | Token::RParen | Token::Gt | Token::RBracket
        ) && between.contains('\n')
        {
            error.span = Span::new(end, end);
        }
        Err(error)
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Token::Ident(w) if w == word)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.is_word(word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, word: &str) -> PResult<Span> {
        if self.is_word(word) {
            Ok(self.bump().span)
        } else {
            Err(self.unexpected(format!("`{word}`")))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        if !matches!(self.peek(), Token::Ident(_)) {
            return Err(self.unexpected(what));
        }
        match self.bump() {
            Spanned {
                token: Token::Ident(name),
                span,
            } => Ok(Ident { name, span }),
            _ => Err(self.unexpected(what)),
        }
    }

    /// An item's name: a word that is not a built-in type.
    fn item_name(&mut self) -> PResult<Ident> {
        if let Token::Ident(word) = self.peek()
            && is_reserved_type_word(word)
        {
            return Err(self.unexpected("a name (built-in type names are reserved)"));
        }
        self.ident("a name")
    }

    fn docs(&mut self) -> Docs {
        let mut lines = Vec::new();
        while let Token::Doc(line) = self.peek() {
            lines.push(line.clone());
            self.pos += 1;
        }
        Docs(lines)
    }

    /// One of `choices`, returning its index.
    fn choice(&mut self, choices: &[&str], expected: &str) -> PResult<(usize, Span)> {
        if let Token::Ident(word) = self.peek()
            && let Some(i) = choices.iter().position(|c| c == word)
        {
            return Ok((i, self.bump().span));
        }
        Err(self.unexpected(expected))
    }

    fn file(&mut self) -> PResult<File> {
        let mut file = File::default();
        let mut docs = self.docs();
        if self.is_word("package") {
            file.package = Some(self.package(std::mem::take(&mut docs))?);
            docs = self.docs();
        }
        loop {
            if *self.peek() == Token::Eof {
                if !docs.is_empty() {
                    return Err(self.unexpected("an item after the doc comment"));
                }
                return Ok(file);
            }
            if self.is_word("package") {
                let span = self.span();
                let kind = if file.package.is_some() {
                    ErrorKind::DuplicatePackage
                } else {
                    ErrorKind::PackageNotFirst
                };
                return Err(Error::new(kind, span));
            }
            let item = self.item(docs)?;
            file.items.push(item);
            docs = self.docs();
        }
    }

    fn package(&mut self, docs: Docs) -> PResult<Package> {
        let start = self.expect_word("package")?;
        let first = self.ident("a package name")?;
        let mut name = first.name;
        while self.eat(&Token::Colon) {
            let part = self.ident("a package name after `:`")?;
            name.push(':');
            name.push_str(&part.name);
        }
        let version = if self.eat(&Token::At) {
            match self.peek().clone() {
                Token::Version(v) if is_semver(&v) => {
                    self.pos += 1;
                    Some(v)
                }
                _ => return Err(self.unexpected("a semver version like `1.2.3`")),
            }
        } else {
            None
        };
        self.expect(Token::Semi, "`;`")?;
        Ok(Package {
            name,
            version,
            docs,
            span: self.since(start),
        })
    }

    fn item(&mut self, docs: Docs) -> PResult<Item> {
        let start = self.span();
        let (kind, _) = self.choice(
            &["struct", "union", "enum", "flags", "resource", "interface"],
            "an item (`struct`, `union`, `enum`, `flags`, `resource` or `interface`)",
        )?;
        let name = self.item_name()?;
        Ok(match kind {
            0 => Item::Struct(self.struct_body(name, docs, start)?),
            1 => Item::Union(self.union_body(name, docs, start)?),
            2 => Item::Enum(self.enum_body(name, docs, start)?),
            3 => Item::Flags(self.flags_body(name, docs, start)?),
            4 => {
                self.expect(Token::Semi, "`;`")?;
                Item::Resource(ResourceDef {
                    name,
                    docs,
                    span: self.since(start),
                })
            }
            _ => Item::Interface(self.interface_body(name, docs, start)?),
        })
    }

    fn evolution(&mut self) -> PResult<Evolution> {
        let (i, _) = self.choice(&["inline", "dynamic"], "`inline` or `dynamic`")?;
        Ok(if i == 0 {
            Evolution::Inline
        } else {
            Evolution::Dynamic
        })
    }

    /// Parses `{ docs entry ... }`, calling `entry` with each entry's docs.
    fn block<T>(
        &mut self,
        mut entry: impl FnMut(&mut Self, Docs) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        self.expect(Token::LBrace, "`{`")?;
        let mut entries = Vec::new();
        loop {
            let docs = self.docs();
            if self.eat(&Token::RBrace) {
                if !docs.is_empty() {
                    // The doc comment documents nothing; point at it.
                    let at = self.pos.saturating_sub(2);
                    let span = self.tokens.get(at).map_or(Span::DUMMY, |t| t.span);
                    return Err(Error::new(
                        ErrorKind::Expected {
                            expected: "a declaration after the doc comment".into(),
                            found: "`}`".into(),
                        },
                        span,
                    ));
                }
                return Ok(entries);
            }
            entries.push(entry(self, docs)?);
        }
    }

    fn struct_body(&mut self, name: Ident, docs: Docs, start: Span) -> PResult<StructDef> {
        self.expect(Token::LParen, "`(`")?;
        let evolution = self.evolution()?;
        self.expect(Token::RParen, "`)`")?;
        let fields = self.block(|p, docs| {
            let name = p.ident("a field name or `}`")?;
            p.expect(Token::Colon, "`:`")?;
            let ty = p.ty()?;
            let default = if p.eat(&Token::Eq) {
                Some(p.literal()?)
            } else {
                None
            };
            p.expect(Token::Semi, "`;`")?;
            let span = p.since(name.span);
            Ok(Field {
                name,
                ty,
                default,
                docs,
                span,
            })
        })?;
        Ok(StructDef {
            name,
            evolution,
            fields,
            docs,
            span: self.since(start),
        })
    }

    fn union_body(&mut self, name: Ident, docs: Docs, start: Span) -> PResult<UnionDef> {
        self.expect(Token::LParen, "`(`")?;
        let evolution = self.evolution()?;
        self.expect(Token::Comma, "`,`")?;
        let (width, _) =
            self.choice(&["u8", "u16", "u32"], "a tag width (`u8`, `u16` or `u32`)")?;
        let tag = [TagWidth::U8, TagWidth::U16, TagWidth::U32]
            .get(width)
            .copied()
            .unwrap_or(TagWidth::U8);
        self.expect(Token::RParen, "`)`")?;
        let cases = self.block(|p, docs| {
            let name = p.ident("a case name or `}`")?;
            let ty = if p.eat(&Token::Colon) {
                Some(p.ty()?)
            } else {
                None
            };
            let tag = if p.eat(&Token::Eq) {
                Some(p.tag_value("a tag")?)
            } else {
                None
            };
            p.expect(
                Token::Semi,
                if tag.is_some() {
                    "`;`"
                } else {
                    "`:`, `=` or `;`"
                },
            )?;
            let span = p.since(name.span);
            Ok(UnionCase {
                name,
                ty,
                tag,
                docs,
                span,
            })
        })?;
        Ok(UnionDef {
            name,
            evolution,
            tag,
            cases,
            docs,
            span: self.since(start),
        })
    }

    fn tag_value(&mut self, what: &str) -> PResult<u64> {
        match *self.peek() {
            Token::Int(n) => {
                let span = self.bump().span;
                u64::try_from(n).map_err(|_| {
                    Error::new(
                        ErrorKind::BadNumber(format!("{n} (larger than `u64`)")),
                        span,
                    )
                })
            }
            _ => Err(self.unexpected(format!("{what} (a non-negative integer)"))),
        }
    }

    fn enum_body(&mut self, name: Ident, docs: Docs, start: Span) -> PResult<EnumDef> {
        self.expect(Token::LParen, "`(`")?;
        let (width, _) =
            self.choice(&["u8", "u16", "u32", "u64"], "`u8`, `u16`, `u32` or `u64`")?;
        let repr = [IntWidth::U8, IntWidth::U16, IntWidth::U32, IntWidth::U64]
            .get(width)
            .copied()
            .unwrap_or(IntWidth::U8);
        self.expect(Token::RParen, "`)`")?;
        let cases = self.block(|p, docs| {
            let name = p.ident("a case name or `}`")?;
            let value = if p.eat(&Token::Eq) {
                Some(p.tag_value("a value")?)
            } else {
                None
            };
            p.expect(
                Token::Semi,
                if value.is_some() { "`;`" } else { "`=` or `;`" },
            )?;
            let span = p.since(name.span);
            Ok(EnumCase {
                name,
                value,
                docs,
                span,
            })
        })?;
        Ok(EnumDef {
            name,
            repr,
            cases,
            docs,
            span: self.since(start),
        })
    }

    fn flags_body(&mut self, name: Ident, docs: Docs, start: Span) -> PResult<FlagsDef> {
        let flags = self.block(|p, docs| {
            let name = p.ident("a flag name or `}`")?;
            p.expect(Token::Semi, "`;`")?;
            let span = p.since(name.span);
            Ok(FlagCase { name, docs, span })
        })?;
        Ok(FlagsDef {
            name,
            flags,
            docs,
            span: self.since(start),
        })
    }

    fn interface_body(&mut self, name: Ident, docs: Docs, start: Span) -> PResult<InterfaceDef> {
        self.expect(Token::LParen, "`(`")?;
        let evolution = self.evolution()?;
        self.expect(Token::Comma, "`,`")?;
        let (pattern, _) = self.choice(
            &["direct", "fanout", "singleton", "single", "pool"],
            "a pattern (`direct`, `fanout`, `singleton` or `pool`)",
        )?;
        let pattern = match pattern {
            0 => Pattern::Direct,
            1 => Pattern::Fanout,
            2 | 3 => Pattern::Singleton,
            _ => Pattern::Pool,
        };
        self.expect(Token::RParen, "`)`")?;
        let members = self.block(|p, docs| p.member(docs))?;
        Ok(InterfaceDef {
            name,
            evolution,
            pattern,
            members,
            docs,
            span: self.since(start),
        })
    }

    fn member(&mut self, docs: Docs) -> PResult<Member> {
        let name = self.ident("a memory or function name, or `}`")?;
        self.expect(Token::Colon, "`:`")?;
        if self.eat_word("memory") {
            self.expect(Token::LParen, "`(`")?;
            self.expect_word("import")?;
            self.expect(Token::Colon, "`:`")?;
            let import = self.access()?;
            self.expect(Token::Comma, "`,`")?;
            self.expect_word("export")?;
            self.expect(Token::Colon, "`:`")?;
            let export = self.access()?;
            self.expect(Token::Comma, "`,`")?;
            let pages = match *self.peek() {
                Token::Int(n) => {
                    let span = self.bump().span;
                    u32::try_from(n)
                        .map_err(|_| Error::new(ErrorKind::BadNumber(format!("{n} pages")), span))?
                }
                _ => return Err(self.unexpected("a size in 64 KiB pages")),
            };
            self.expect(Token::RParen, "`)`")?;
            self.expect(Token::Semi, "`;`")?;
            let span = self.since(name.span);
            return Ok(Member::Memory(MemoryDef {
                name,
                import,
                export,
                pages,
                docs,
                span,
            }));
        }
        let syntax = if self.eat_word("fn") {
            FnSyntax::Named
        } else if *self.peek() == Token::LParen {
            FnSyntax::Arrow
        } else {
            return Err(self.unexpected("`memory`, `fn` or `(`"));
        };
        let params = self.params()?;
        if syntax == FnSyntax::Arrow {
            self.expect(Token::Arrow, "`->`")?;
        }
        let results = self.params()?;
        self.expect(Token::Semi, "`;`")?;
        let span = self.since(name.span);
        Ok(Member::Function(FunctionDef {
            name,
            syntax,
            params,
            results,
            docs,
            span,
        }))
    }

    fn access(&mut self) -> PResult<Access> {
        let (i, _) = self.choice(&["none", "read", "write"], "`read`, `write` or `none`")?;
        Ok([Access::None, Access::Read, Access::Write]
            .get(i)
            .copied()
            .unwrap_or(Access::None))
    }

    /// `( [name :] type [@ memory], ... )`
    fn params(&mut self) -> PResult<Vec<Param>> {
        self.expect(Token::LParen, "`(`")?;
        let mut params = Vec::new();
        while !self.eat(&Token::RParen) {
            let start = self.span();
            let name =
                if matches!(self.peek(), Token::Ident(_)) && *self.peek_nth(1) == Token::Colon {
                    let name = self.ident("a parameter name")?;
                    self.bump();
                    Some(name)
                } else {
                    None
                };
            let ty = self.ty()?;
            let memory = if self.eat(&Token::At) {
                Some(self.ident("a memory name")?)
            } else {
                None
            };
            params.push(Param {
                name,
                ty,
                memory,
                span: self.since(start),
            });
            if !self.eat(&Token::Comma) {
                self.expect(Token::RParen, "`,` or `)`")?;
                break;
            }
        }
        Ok(params)
    }

    /// `type = prefix { '#' attr }`: attributes bind to everything before them.
    fn ty(&mut self) -> PResult<TypeRef> {
        let start = self.span();
        let mut ty = self.prefix_type()?;
        while *self.peek() == Token::Hash {
            let hash = self.bump().span;
            let (i, _) = self.choice(
                &["soa", "aos", "bovoa", "bovos", "string"],
                "an attribute (`soa`, `aos`, `bovoa`, `bovos` or `string`)",
            )?;
            let kind = [
                AttrKind::Soa,
                AttrKind::Aos,
                AttrKind::Bovoa,
                AttrKind::Bovos,
                AttrKind::String,
            ]
            .get(i)
            .copied()
            .unwrap_or(AttrKind::Soa);
            ty.attrs.push(Attr {
                kind,
                span: self.since(hash),
            });
        }
        ty.span = self.since(start);
        Ok(ty)
    }

    fn prefix_type(&mut self) -> PResult<TypeRef> {
        if self.depth >= MAX_TYPE_DEPTH {
            return Err(Error::new(
                ErrorKind::TooDeep {
                    max: MAX_TYPE_DEPTH,
                },
                self.span(),
            ));
        }
        self.depth += 1;
        let result = self.prefix_type_inner();
        self.depth -= 1;
        result
    }

    fn prefix_type_inner(&mut self) -> PResult<TypeRef> {
        let start = self.span();
        let kind = match self.peek() {
            Token::LBracket => {
                self.bump();
                if self.eat(&Token::RBracket) {
                    TypeKind::Array(Box::new(self.prefix_type()?))
                } else {
                    let len = match *self.peek() {
                        Token::Int(n) => {
                            let span = self.bump().span;
                            u32::try_from(n).map_err(|_| {
                                Error::new(ErrorKind::BadNumber(format!("array length {n}")), span)
                            })?
                        }
                        _ => return Err(self.unexpected("`]` or an array length")),
                    };
                    self.expect(Token::RBracket, "`]`")?;
                    TypeKind::FixedArray(Box::new(self.prefix_type()?), len)
                }
            }
            Token::LParen => {
                self.bump();
                let inner = self.ty()?;
                self.expect(Token::RParen, "`)`")?;
                return Ok(inner);
            }
            Token::Ident(_) => {
                let ident = self.ident("a type")?;
                match ident.name.as_str() {
                    "option" => {
                        self.expect(Token::Lt, "`<`")?;
                        let inner = self.ty()?;
                        self.expect(Token::Gt, "`>`")?;
                        TypeKind::Option(Box::new(inner))
                    }
                    "result" => self.result_args()?,
                    "map" => {
                        self.expect(Token::Lt, "`<`")?;
                        let key = self.ty()?;
                        self.expect(Token::Comma, "`,` and a value type (`map<K, V>`)")?;
                        let value = self.ty()?;
                        self.expect(Token::Gt, "`>`")?;
                        TypeKind::Map {
                            key: Box::new(key),
                            value: Box::new(value),
                        }
                    }
                    "own" | "borrow" => {
                        self.expect(Token::Lt, "`<`")?;
                        let resource = self.item_name()?;
                        self.expect(Token::Gt, "`>`")?;
                        let kind = if ident.name == "own" {
                            HandleKind::Own
                        } else {
                            HandleKind::Borrow
                        };
                        TypeKind::Handle(kind, resource)
                    }
                    "_" => {
                        return Err(Error::new(
                            ErrorKind::Expected {
                                expected: "a type".into(),
                                found: "`_`".into(),
                            },
                            ident.span,
                        ));
                    }
                    word => match Prim::ALL.iter().find(|p| p.keyword() == word) {
                        Some(&prim) => TypeKind::Prim(prim),
                        None => TypeKind::Named(ident),
                    },
                }
            }
            _ => return Err(self.unexpected("a type")),
        };
        Ok(TypeRef {
            kind,
            attrs: Vec::new(),
            span: self.since(start),
        })
    }

    /// After `result`: nothing, `<T>`, `<T, E>`, `<_, E>` (or `<T, _>`, `<_, _>`).
    fn result_args(&mut self) -> PResult<TypeKind> {
        if !self.eat(&Token::Lt) {
            return Ok(TypeKind::Result {
                ok: None,
                err: None,
            });
        }
        let ok = self.type_or_blank()?;
        let err = if self.eat(&Token::Comma) {
            self.type_or_blank()?
        } else if ok.is_none() {
            return Err(self.unexpected("`,` and an error type (`result<_, E>`)"));
        } else {
            None
        };
        self.expect(Token::Gt, if err.is_some() { "`>`" } else { "`,` or `>`" })?;
        Ok(TypeKind::Result {
            ok: ok.map(Box::new),
            err: err.map(Box::new),
        })
    }

    fn type_or_blank(&mut self) -> PResult<Option<TypeRef>> {
        if self.eat_word("_") {
            Ok(None)
        } else {
            Ok(Some(self.ty()?))
        }
    }

    fn literal(&mut self) -> PResult<Literal> {
        let negative = self.eat(&Token::Minus);
        let literal = match self.peek().clone() {
            Token::Int(n) => {
                let span = self.bump().span;
                let value = if negative {
                    if n == 1u128 << 127 {
                        Some(i128::MIN)
                    } else {
                        i128::try_from(n).ok().map(|v| -v)
                    }
                } else {
                    i128::try_from(n).ok()
                };
                let value =
                    value.ok_or_else(|| Error::new(ErrorKind::BadNumber(n.to_string()), span))?;
                return Ok(Literal::Int(value));
            }
            Token::Float(f) => {
                self.bump();
                return Ok(Literal::Float(if negative { -f } else { f }));
            }
            _ if negative => return Err(self.unexpected("a number after `-`")),
            Token::Str(s) => Literal::Str(s),
            Token::Char(c) => Literal::Char(c),
            Token::Ident(word) if word == "true" || word == "false" => {
                Literal::Bool(word == "true")
            }
            Token::Ident(_) => return Ok(Literal::Name(self.ident("a literal")?)),
            _ => return Err(self.unexpected("a default value")),
        };
        self.bump();
        Ok(literal)
    }
}

/// `MAJOR.MINOR.PATCH` with optional `-pre` and `+build` parts.
fn is_semver(version: &str) -> bool {
    let (core, _build) = version.split_once('+').unwrap_or((version, ""));
    let (core, _pre) = core.split_once('-').unwrap_or((core, ""));
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}
