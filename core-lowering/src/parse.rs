//! Phase 1: validate a component binary and split it into static pieces.
//!
//! Owns: validation with the features components need, and a tree of
//! [`StaticComponent`]s (one per component, root and nested) whose
//! initializers are kept in declaration order, plus every core module's
//! bytes. Nothing is evaluated here; the inliner (`graph`) gives the pieces
//! meaning. Leaves feature refusals that need context (async lifts, streams)
//! to the inliner, which knows where they occur.

use anyhow::{Context, Result, bail};
use wasmparser::{
    CanonicalFunction, ComponentAlias, ComponentExport, ComponentImport, ComponentInstance,
    ComponentType, Encoding, Instance, Parser, Payload, Validator, WasmFeatures,
};

/// Arena handle of a static (not yet instantiated) component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StaticComponentId(pub usize);

/// Arena handle of a static core module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StaticModuleId(pub usize);

/// One definition of a component, in the order it appears in the binary.
#[derive(Debug)]
pub enum Initializer<'a> {
    CoreModule(StaticModuleId),
    Component(StaticComponentId),
    CoreInstance(Instance<'a>),
    CoreType,
    Instance(ComponentInstance<'a>),
    Alias(ComponentAlias<'a>),
    Type(ComponentType<'a>),
    Canon { func: CanonicalFunction, offset: usize },
    Import(ComponentImport<'a>),
    Export(ComponentExport<'a>),
    Start { offset: usize },
}

/// A component as written: its definitions, not yet evaluated.
#[derive(Debug)]
pub struct StaticComponent<'a> {
    /// Human-readable position, e.g. `root` or `root/component 1`.
    pub location: String,
    pub initializers: Vec<Initializer<'a>>,
}

/// A core module as written.
#[derive(Debug)]
pub struct StaticModule<'a> {
    pub location: String,
    pub bytes: &'a [u8],
}

/// Every static component and module of a binary; component 0 is the root.
#[derive(Debug)]
pub struct ParsedComponent<'a> {
    pub components: Vec<StaticComponent<'a>>,
    pub modules: Vec<StaticModule<'a>>,
}

#[allow(
    clippy::indexing_slicing,
    reason = "arena accessors: ids are only created by `parse`, as positions in these arenas"
)]
impl<'a> ParsedComponent<'a> {
    pub fn component(&self, id: StaticComponentId) -> &StaticComponent<'a> {
        &self.components[id.0]
    }

    pub fn module(&self, id: StaticModuleId) -> &StaticModule<'a> {
        &self.modules[id.0]
    }
}

/// The wasm features a component may use and still be parsed. Features we
/// cannot lower (async, threads, ...) are accepted here on purpose so that
/// the inliner can refuse them by name instead of a validator message.
pub fn validator_features() -> WasmFeatures {
    WasmFeatures::all()
}

/// Is this binary a component (as opposed to a core module)?
pub fn is_component(bytes: &[u8]) -> bool {
    Parser::is_component(bytes)
}

/// What is wrong with the 8-byte header of something that is not a
/// component, with the offset where it goes wrong.
fn header_problem(bytes: &[u8]) -> String {
    const MAGIC: &[u8] = b"\0asm";
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes.get(..magic_len) != MAGIC.get(..magic_len) {
        let at = bytes.iter().zip(MAGIC).take_while(|(a, b)| a == b).count();
        return format!("no `\\0asm` magic number (byte {at} differs)");
    }
    if bytes.len() < 8 {
        return format!("the input ends at byte {}, inside the 8-byte header", bytes.len());
    }
    let version: Vec<String> = bytes.get(4..8).unwrap_or_default().iter().map(|b| format!("{b:02x}")).collect();
    format!("unknown version and layer `{}` at offset 4", version.join(" "))
}

/// Validate `bytes` as a component and split it into static pieces.
pub fn parse(bytes: &[u8]) -> Result<ParsedComponent<'_>> {
    if !Parser::is_component(bytes) {
        if Parser::is_core_wasm(bytes) {
            bail!("the input is a core module, not a component");
        }
        bail!("the input is not a WebAssembly component: {}", header_problem(bytes));
    }
    Validator::new_with_features(validator_features())
        .validate_all(bytes)
        .context("the component does not validate")?;

    let mut parsed = ParsedComponent { components: Vec::new(), modules: Vec::new() };
    // What the parser is inside of: a component (by id) or a module (skipped).
    enum Frame {
        Component(StaticComponentId),
        Module,
    }
    let mut stack: Vec<Frame> = Vec::new();
    // A `ComponentSection` payload announces the nested component whose
    // `Version` payload comes next.
    let mut pending_component: Option<StaticComponentId> = None;
    let mut pending_module = false;

    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.context("failed to parse the component")?;
        let current = match stack.last() {
            Some(Frame::Component(id)) => Some(*id),
            _ => None,
        };
        match payload {
            Payload::Version { encoding, .. } => match encoding {
                Encoding::Component => {
                    let id = match pending_component.take() {
                        Some(id) => id,
                        None => {
                            let id = StaticComponentId(parsed.components.len());
                            parsed.components.push(StaticComponent {
                                location: "root".to_string(),
                                initializers: Vec::new(),
                            });
                            id
                        }
                    };
                    stack.push(Frame::Component(id));
                }
                Encoding::Module => {
                    if !pending_module && stack.is_empty() {
                        bail!("the input is a core module, not a component");
                    }
                    pending_module = false;
                    stack.push(Frame::Module);
                }
            },
            Payload::End(_) => {
                stack.pop();
            }
            // Everything inside a nested core module is its own business;
            // the module's bytes were recorded when its section began.
            _ if current.is_none() => {}
            Payload::ModuleSection { unchecked_range, .. } => {
                let parent = component_mut(&mut parsed, current)?;
                let location = format!(
                    "{}/module {}",
                    parent.location,
                    parent
                        .initializers
                        .iter()
                        .filter(|i| matches!(i, Initializer::CoreModule(_)))
                        .count()
                );
                let module_bytes = bytes.get(unchecked_range.clone()).with_context(|| {
                    format!(
                        "the core module at offset {} claims bytes {}..{}, past the end of the {}-byte input",
                        unchecked_range.start,
                        unchecked_range.start,
                        unchecked_range.end,
                        bytes.len()
                    )
                })?;
                let id = StaticModuleId(parsed.modules.len());
                parsed.modules.push(StaticModule { location, bytes: module_bytes });
                component_mut(&mut parsed, current)?.initializers.push(Initializer::CoreModule(id));
                pending_module = true;
            }
            Payload::ComponentSection { .. } => {
                let parent = component_mut(&mut parsed, current)?;
                let location = format!(
                    "{}/component {}",
                    parent.location,
                    parent
                        .initializers
                        .iter()
                        .filter(|i| matches!(i, Initializer::Component(_)))
                        .count()
                );
                let id = StaticComponentId(parsed.components.len());
                parsed.components.push(StaticComponent { location, initializers: Vec::new() });
                component_mut(&mut parsed, current)?.initializers.push(Initializer::Component(id));
                pending_component = Some(id);
            }
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    let instance = instance.context("failed to read a core instance")?;
                    push(&mut parsed, current, Initializer::CoreInstance(instance))?;
                }
            }
            Payload::CoreTypeSection(reader) => {
                for ty in reader {
                    ty.context("failed to read a core type")?;
                    push(&mut parsed, current, Initializer::CoreType)?;
                }
            }
            Payload::ComponentInstanceSection(reader) => {
                for instance in reader {
                    let instance = instance.context("failed to read a component instance")?;
                    push(&mut parsed, current, Initializer::Instance(instance))?;
                }
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    let alias = alias.context("failed to read an alias")?;
                    push(&mut parsed, current, Initializer::Alias(alias))?;
                }
            }
            Payload::ComponentTypeSection(reader) => {
                for ty in reader {
                    let ty = ty.context("failed to read a component type")?;
                    push(&mut parsed, current, Initializer::Type(ty))?;
                }
            }
            Payload::ComponentCanonicalSection(reader) => {
                let mut reader = reader.into_iter_with_offsets();
                for item in reader.by_ref() {
                    let (offset, func) = item.context("failed to read a canonical function")?;
                    push(&mut parsed, current, Initializer::Canon { func, offset })?;
                }
            }
            Payload::ComponentStartSection { range, .. } => {
                push(&mut parsed, current, Initializer::Start { offset: range.start })?;
            }
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.context("failed to read a component import")?;
                    push(&mut parsed, current, Initializer::Import(import))?;
                }
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader {
                    let export = export.context("failed to read a component export")?;
                    push(&mut parsed, current, Initializer::Export(export))?;
                }
            }
            // Custom sections (names, producers) carry no semantics.
            _ => {}
        }
    }
    if parsed.components.is_empty() {
        bail!("the input holds no component");
    }
    Ok(parsed)
}

fn component_mut<'p, 'a>(
    parsed: &'p mut ParsedComponent<'a>,
    current: Option<StaticComponentId>,
) -> Result<&'p mut StaticComponent<'a>> {
    current
        .and_then(|id| parsed.components.get_mut(id.0))
        .context("a component section appeared outside of any component")
}

fn push<'a>(
    parsed: &mut ParsedComponent<'a>,
    current: Option<StaticComponentId>,
    init: Initializer<'a>,
) -> Result<()> {
    component_mut(parsed, current)?.initializers.push(init);
    Ok(())
}
