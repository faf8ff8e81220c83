//! The instance graph: what a component instantiates, once evaluated.
//!
//! Owns: the data model the inliner (`inline`) produces and the merge
//! (`merge`) consumes. Every core module instantiation becomes a
//! [`ModuleInstance`] whose imports are each resolved to a [`CoreDef`]
//! (another instance's export, a lowered component import, a canon builtin,
//! or a lifted export of a sibling component through an adapter). Arena
//! handles are `FooId`; final wasm indices live in `merge` as `FooIndex`.

use crate::parse::StaticModuleId;
use crate::types::FuncSig;

/// Arena handle of a core module instantiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleInstanceId(pub usize);

/// Arena handle of a `canon lower`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoweredId(pub usize);

/// Arena handle of a `canon lift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LiftedId(pub usize);

/// Arena handle of a canonical builtin (`resource.new` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuiltinId(pub usize);

/// Arena handle of a resource type defined inside the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DefinedResourceId(pub usize);

/// A core item (function, table, memory or global) as the component sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreDef {
    /// The export `name` of an instantiated core module.
    Export(ModuleInstanceId, String),
    /// A core function made by `canon lower`.
    Lowered(LoweredId),
    /// A core function made by `canon resource.*`.
    Builtin(BuiltinId),
}

/// A path from a component import to an item: the import name, then the
/// export names walked through nested instances.
pub type ImportPath = Vec<String>;

/// Which resource type a handle refers to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceRef {
    Defined(DefinedResourceId),
    Imported(ImportPath),
}

/// A resource type defined by a component instance (each instantiation of
/// a component that defines a resource makes a new one).
#[derive(Debug, Clone)]
pub struct DefinedResource {
    pub location: String,
    /// The component instance that defined it (borrows lifted into this
    /// instance receive the rep).
    pub owner: usize,
    pub dtor: Option<CoreDef>,
    /// The name it is exported under at the root, once known
    /// (`interface`, `resource`).
    pub export_name: Option<(String, String)>,
}

/// String encoding of a lift or lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringEncoding {
    Utf8,
    Utf16,
    CompactUtf16,
}

/// Canonical options of a lift or lower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonOptions {
    pub memory: Option<CoreDef>,
    pub realloc: Option<CoreDef>,
    pub post_return: Option<CoreDef>,
    pub encoding: StringEncoding,
}

/// A component function as the inliner tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuncDef {
    /// A function reached through the component's imports.
    Import(ImportPath),
    /// A core function lifted by `canon lift`.
    Lifted(LiftedId),
}

/// A `canon lift`.
#[derive(Debug, Clone)]
pub struct Lifted {
    /// The component instance whose core function this lifts.
    pub owner: usize,
    pub core: CoreDef,
    pub options: CanonOptions,
    pub sig: FuncSig,
    pub location: String,
}

/// What a `canon lower` lowers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LowerTarget {
    /// An imported function: becomes a core import of the output.
    Import(ImportPath),
    /// A lifted function of a sibling component: becomes a fused adapter.
    Lifted(LiftedId),
}

/// A `canon lower`.
#[derive(Debug, Clone)]
pub struct Lowered {
    pub target: LowerTarget,
    pub options: CanonOptions,
    pub sig: Option<FuncSig>,
    pub location: String,
    /// The component instantiation the `canon lower` is in.
    pub owner: usize,
}

/// Kinds of canonical builtins we implement inside the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BuiltinKind {
    ResourceNew,
    ResourceRep,
    ResourceDrop,
}

impl BuiltinKind {
    pub fn name(self) -> &'static str {
        match self {
            BuiltinKind::ResourceNew => "resource.new",
            BuiltinKind::ResourceRep => "resource.rep",
            BuiltinKind::ResourceDrop => "resource.drop",
        }
    }
}

/// A `canon resource.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builtin {
    pub kind: BuiltinKind,
    pub resource: ResourceRef,
    /// The component instantiation the builtin is in.
    pub owner: usize,
}

/// One core module instantiation with every import resolved.
#[derive(Debug, Clone)]
pub struct ModuleInstance {
    pub module: StaticModuleId,
    pub location: String,
    /// One provider per import of the module, in import order.
    pub imports: Vec<CoreDef>,
}

/// A function the lowered module exports.
#[derive(Debug, Clone)]
pub struct ExportedFunc {
    /// The flat export name, e.g. `example:types/api#echo`.
    pub name: String,
    pub lifted: LiftedId,
}

/// The evaluated component.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Core module instantiations in instantiation order.
    pub instances: Vec<ModuleInstance>,
    pub lifted: Vec<Lifted>,
    pub lowered: Vec<Lowered>,
    pub builtins: Vec<Builtin>,
    pub resources: Vec<DefinedResource>,
    pub exports: Vec<ExportedFunc>,
    /// Component-level import names of the root, in order.
    pub imports: Vec<String>,
    /// How many aliases were evaluated (for `inspect`).
    pub alias_count: usize,
    /// How many component instantiations were evaluated.
    pub component_instances: usize,
    /// Per component instantiation, the one it was instantiated in (`None`: the root).
    pub component_parents: Vec<Option<usize>>,
    /// The type of each imported function whose type the imports spell out.
    pub import_sigs: std::collections::BTreeMap<ImportPath, FuncSig>,
}

#[allow(
    clippy::indexing_slicing,
    reason = "arena accessors: ids are only made by pushing onto these arenas, which never shrink"
)]
impl Graph {
    pub fn lifted(&self, id: LiftedId) -> &Lifted {
        &self.lifted[id.0]
    }
    /// Whether a component instance calling a function lifted by another
    /// would enter an instance already on the stack: the same instance, or
    /// one of them instantiated (transitively) inside the other. The
    /// canonical ABI forbids it ("cannot enter component instance").
    pub fn reenters(&self, caller: usize, callee: usize) -> bool {
        self.is_ancestor(caller, callee) || self.is_ancestor(callee, caller)
    }

    /// Whether `outer` is `inner` or one of the instances it was instantiated in.
    fn is_ancestor(&self, outer: usize, inner: usize) -> bool {
        let mut at = Some(inner);
        // Parents come before their children, so the walk ends.
        while let Some(i) = at {
            if i == outer {
                return true;
            }
            at = self.component_parents.get(i).copied().flatten().filter(|p| *p < i);
        }
        false
    }
    pub fn lowered(&self, id: LoweredId) -> &Lowered {
        &self.lowered[id.0]
    }
    pub fn builtin(&self, id: BuiltinId) -> &Builtin {
        &self.builtins[id.0]
    }
    pub fn instance(&self, id: ModuleInstanceId) -> &ModuleInstance {
        &self.instances[id.0]
    }
    pub fn resource(&self, id: DefinedResourceId) -> &DefinedResource {
        &self.resources[id.0]
    }
}
