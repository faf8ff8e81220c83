//! Property: printing any syntax tree and parsing the text back gives the same
//! tree (up to spans), and printing is idempotent.
//!
//! The generator covers every node kind, including docs, attributes on nested
//! array elements, every literal (control characters in strings and chars,
//! negative and extreme numbers) and both function syntaxes. The trees need not
//! resolve: the property is about the grammar.

#![allow(
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use karmem_idl::ast::*;
use karmem_idl::parser::is_reserved_type_word;
use proptest::prelude::*;

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,5}(-[a-z0-9]{1,3}){0,2}"
}

/// A name that may stand where a type or literal is expected.
fn name() -> impl Strategy<Value = Ident> {
    word()
        .prop_filter("reserved", |w| {
            !is_reserved_type_word(w) && w != "true" && w != "false"
        })
        .prop_map(Ident::new)
}

/// A field, case or member name: any word.
fn any_name() -> impl Strategy<Value = Ident> {
    word().prop_map(Ident::new)
}

fn docs() -> impl Strategy<Value = Docs> {
    prop::collection::vec("\\PC{0,12}", 0..3).prop_map(Docs)
}

fn attrs() -> impl Strategy<Value = Vec<Attr>> {
    let kind = prop_oneof![
        Just(AttrKind::Soa),
        Just(AttrKind::Aos),
        Just(AttrKind::Bovoa),
        Just(AttrKind::Bovos),
        Just(AttrKind::String),
    ];
    prop::collection::vec(
        kind.prop_map(|kind| Attr {
            kind,
            span: Span::DUMMY,
        }),
        0..3,
    )
}

fn type_ref() -> impl Strategy<Value = TypeRef> {
    let leaf = prop_oneof![
        prop::sample::select(Prim::ALL.to_vec()).prop_map(TypeKind::Prim),
        name().prop_map(TypeKind::Named),
        (prop::bool::ANY, name()).prop_map(|(own, id)| {
            TypeKind::Handle(
                if own {
                    HandleKind::Own
                } else {
                    HandleKind::Borrow
                },
                id,
            )
        }),
    ];
    let leaf = (leaf, attrs()).prop_map(|(kind, attrs)| TypeRef {
        kind,
        attrs,
        span: Span::DUMMY,
    });
    leaf.prop_recursive(4, 24, 2, |inner| {
        let kind = prop_oneof![
            inner.clone().prop_map(|t| TypeKind::Array(Box::new(t))),
            (inner.clone(), any::<u32>()).prop_map(|(t, n)| TypeKind::FixedArray(Box::new(t), n)),
            inner.clone().prop_map(|t| TypeKind::Option(Box::new(t))),
            (prop::option::of(inner.clone()), prop::option::of(inner.clone())).prop_map(|(ok, err)| {
                TypeKind::Result {
                    ok: ok.map(Box::new),
                    err: err.map(Box::new),
                }
            }),
            (inner.clone(), inner).prop_map(|(key, value)| TypeKind::Map {
                key: Box::new(key),
                value: Box::new(value),
            }),
        ];
        (kind, attrs()).prop_map(|(kind, attrs)| TypeRef {
            kind,
            attrs,
            span: Span::DUMMY,
        })
    })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<i64>().prop_map(|n| Literal::Int(n.into())),
        prop_oneof![Just(i128::MIN), Just(i128::MAX), Just(u64::MAX as i128)]
            .prop_map(Literal::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Literal::Float),
        any::<bool>().prop_map(Literal::Bool),
        any::<char>().prop_map(Literal::Char),
        any::<String>().prop_map(Literal::Str),
        name().prop_map(Literal::Name),
    ]
}

fn evolution() -> impl Strategy<Value = Evolution> {
    prop_oneof![Just(Evolution::Inline), Just(Evolution::Dynamic)]
}

fn structure() -> impl Strategy<Value = Item> {
    let field = (any_name(), type_ref(), prop::option::of(literal()), docs()).prop_map(
        |(name, ty, default, docs)| Field {
            name,
            ty,
            default,
            docs,
            span: Span::DUMMY,
        },
    );
    (
        name(),
        evolution(),
        prop::collection::vec(field, 0..4),
        docs(),
    )
        .prop_map(|(name, evolution, fields, docs)| {
            Item::Struct(StructDef {
                name,
                evolution,
                fields,
                docs,
                span: Span::DUMMY,
            })
        })
}

fn union() -> impl Strategy<Value = Item> {
    let case = (
        any_name(),
        prop::option::of(type_ref()),
        prop::option::of(any::<u64>()),
        docs(),
    )
        .prop_map(|(name, ty, tag, docs)| UnionCase {
            name,
            ty,
            tag,
            docs,
            span: Span::DUMMY,
        });
    let width = prop_oneof![Just(TagWidth::U8), Just(TagWidth::U16), Just(TagWidth::U32)];
    (
        name(),
        evolution(),
        width,
        prop::collection::vec(case, 0..4),
        docs(),
    )
        .prop_map(|(name, evolution, tag, cases, docs)| {
            Item::Union(UnionDef {
                name,
                evolution,
                tag,
                cases,
                docs,
                span: Span::DUMMY,
            })
        })
}

fn enumeration() -> impl Strategy<Value = Item> {
    let case =
        (any_name(), prop::option::of(any::<u64>()), docs()).prop_map(|(name, value, docs)| {
            EnumCase {
                name,
                value,
                docs,
                span: Span::DUMMY,
            }
        });
    let repr = prop_oneof![
        Just(IntWidth::U8),
        Just(IntWidth::U16),
        Just(IntWidth::U32),
        Just(IntWidth::U64)
    ];
    (name(), repr, prop::collection::vec(case, 0..4), docs()).prop_map(
        |(name, repr, cases, docs)| {
            Item::Enum(EnumDef {
                name,
                repr,
                cases,
                docs,
                span: Span::DUMMY,
            })
        },
    )
}

fn flags() -> impl Strategy<Value = Item> {
    let flag = (any_name(), docs()).prop_map(|(name, docs)| FlagCase {
        name,
        docs,
        span: Span::DUMMY,
    });
    (name(), prop::collection::vec(flag, 0..4), docs()).prop_map(|(name, flags, docs)| {
        Item::Flags(FlagsDef {
            name,
            flags,
            docs,
            span: Span::DUMMY,
        })
    })
}

fn resource() -> impl Strategy<Value = Item> {
    (name(), docs()).prop_map(|(name, docs)| {
        Item::Resource(ResourceDef {
            name,
            docs,
            span: Span::DUMMY,
        })
    })
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![Just(Access::None), Just(Access::Read), Just(Access::Write)]
}

fn member() -> impl Strategy<Value = Member> {
    let memory = (any_name(), access(), access(), any::<u32>(), docs()).prop_map(
        |(name, import, export, pages, docs)| {
            Member::Memory(MemoryDef {
                name,
                import,
                export,
                pages,
                docs,
                span: Span::DUMMY,
            })
        },
    );
    let param = || {
        (
            prop::option::of(any_name()),
            type_ref(),
            prop::option::of(any_name()),
        )
            .prop_map(|(name, ty, memory)| Param {
                name,
                ty,
                memory,
                span: Span::DUMMY,
            })
    };
    let syntax = prop_oneof![Just(FnSyntax::Named), Just(FnSyntax::Arrow)];
    let function = (
        any_name(),
        syntax,
        prop::collection::vec(param(), 0..3),
        prop::collection::vec(param(), 0..3),
        docs(),
    )
        .prop_map(|(name, syntax, params, results, docs)| {
            Member::Function(FunctionDef {
                name,
                syntax,
                params,
                results,
                docs,
                span: Span::DUMMY,
            })
        });
    prop_oneof![memory, function]
}

fn interface() -> impl Strategy<Value = Item> {
    let pattern = prop_oneof![
        Just(Pattern::Direct),
        Just(Pattern::Fanout),
        Just(Pattern::Singleton),
        Just(Pattern::Pool)
    ];
    (
        name(),
        evolution(),
        pattern,
        prop::collection::vec(member(), 0..4),
        docs(),
    )
        .prop_map(|(name, evolution, pattern, members, docs)| {
            Item::Interface(InterfaceDef {
                name,
                evolution,
                pattern,
                members,
                docs,
                span: Span::DUMMY,
            })
        })
}

fn package() -> impl Strategy<Value = Package> {
    let version = "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z0-9.]{1,5})?(\\+[a-z0-9]{1,5})?";
    (
        prop::collection::vec(word(), 1..3),
        prop::option::of(version),
        docs(),
    )
        .prop_map(|(parts, version, docs)| Package {
            name: parts.join(":"),
            version,
            docs,
            span: Span::DUMMY,
        })
}

fn file() -> impl Strategy<Value = File> {
    let item = prop_oneof![
        structure(),
        union(),
        enumeration(),
        flags(),
        resource(),
        interface()
    ];
    (
        prop::option::of(package()),
        prop::collection::vec(item, 0..5),
    )
        .prop_map(|(package, items)| File { package, items })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_of_print_is_identity(file in file()) {
        let printed = karmem_idl::print(&file);
        let parsed = karmem_idl::parse(&printed);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed.err(), printed);
        let parsed = parsed.unwrap_or_default();
        prop_assert_eq!(parsed.without_spans(), file.without_spans(), "{}", printed);
        prop_assert_eq!(karmem_idl::print(&parsed), printed);
    }
}

#[test]
fn maps_print_in_canonical_form_and_parse_back() {
    let canonical = "struct s (dynamic) {\n    a: map<[]u8 #string, u32>;\n    b: map<u32, []([]u8 #string)>;\n    c: map<char, map<i8, option<[]u16 #string>>>;\n}\n";
    let messy = "struct s(dynamic){a:map< []u8#string ,u32>;b:map<u32,[]([]u8 #string)>;c:map<char,map<i8,option<[]u16#string>>>;}";
    let parsed = karmem_idl::parse(messy).unwrap_or_default();
    assert_eq!(karmem_idl::print(&parsed), canonical);
    let Some(Item::Struct(s)) = parsed.items.first() else { panic!("a struct") };
    let Some(TypeKind::Map { key, value }) = s.fields.first().map(|f| &f.ty.kind) else { panic!("a map") };
    assert!(key.has_attr(AttrKind::String) && matches!(value.kind, TypeKind::Prim(Prim::U32)));
    assert!(karmem_idl::load(canonical, "maps.km").is_ok());
    // `map` is a built-in type word: no item may take its name.
    assert!(karmem_idl::parse("struct map (inline) { x: u8; }").is_err());
}

#[test]
fn without_spans_forgets_only_spans() {
    let a = karmem_idl::parse("struct a (inline) { x: []u8 #string; }").unwrap_or_default();
    let b = karmem_idl::parse("struct  a(inline){x:[]u8#string;}").unwrap_or_default();
    assert_ne!(a, b);
    assert_eq!(a.without_spans(), b.without_spans());
    assert_eq!(a.items.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary text never panics the parser, resolver or renderer.
    #[test]
    fn arbitrary_text_is_diagnosed_not_panicked(source in "(\\PC|[{}()\\[\\]<>:;,=@#/*'\"\\n-]){0,80}") {
        let _ = karmem_idl::load(&source, "fuzz.km").map_err(|d| d.to_report());
    }

    /// Damaged versions of a real file (a span of bytes cut out) are diagnosed.
    #[test]
    fn damaged_corpus_is_diagnosed_not_panicked(cut in 0usize..3000, len in 1usize..40) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/idl/constructs.km");
        let source = std::fs::read_to_string(path).unwrap_or_default();
        let start = cut.min(source.len());
        let end = (start + len).min(source.len());
        if let (Some(head), Some(tail)) = (source.get(..start), source.get(end..)) {
            let damaged = format!("{head}{tail}");
            if let Err(d) = karmem_idl::load(&damaged, "damaged.km") {
                prop_assert!(d.to_report().starts_with("error: "));
            }
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let source = format!("struct a (dynamic) {{ x: {}u8; }}", "[]".repeat(100_000));
    let err = karmem_idl::parse(&source).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("type nested more than 100 levels deep")
    );
    let source = format!(
        "struct a (dynamic) {{ x: {}u8{}; }}",
        "option<".repeat(150),
        ">".repeat(150)
    );
    assert!(karmem_idl::parse(&source).is_err());
}

#[test]
fn long_chains_of_inline_structs_resolve() {
    let mut source = String::new();
    for i in 0..20_000 {
        source.push_str(&format!("struct s{i} (inline) {{ next: s{}; }}\n", i + 1));
    }
    source.push_str("struct s20000 (inline) { last: s0; }\n");
    let errors = karmem_idl::load(&source, "chain.km")
        .err()
        .map(|d| d.errors().len());
    assert_eq!(errors, Some(1));
}
