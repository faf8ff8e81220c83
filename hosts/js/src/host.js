// The Karmem host for JavaScript: loads a module lowered by
// `karmem-bridge lower`, runs the handshake of docs/ABI.md and calls its
// functions with Karmem messages.
//
// Owns: instantiation (WASI preview1 from the caller, `node:wasi`, or the
// minimal one in wasi.js), the handshake (`_initialize`, `KarmemInit`, the
// descriptors of `KarmemImport`/`KarmemExport`), calls by name or id with
// the dynamic codec (codec.js) or with bytes (the typed path of
// `gen ts` output), host imports `karmem:I`/`f` served by JavaScript
// functions, resource drops, a memory limit, and exits and traps.
// Linking guests to each other is link.js.

import { Layout, KarmemError, decode, encodeFields, decodeFields } from "./codec.js";
import { DESCRIPTOR_LAYOUT } from "./descriptor.js";

const PATTERNS = ["direct", "fanout", "singleton", "pool"];
const WASM_PAGE = 65536;

/** The guest trapped (a WebAssembly.RuntimeError, or a host function that threw). */
export class Trap extends Error {
  constructor(cause) {
    super(`the guest trapped: ${cause?.message ?? cause}`, { cause });
    this.name = "Trap";
  }
}

/** The guest exited through WASI `proc_exit`. */
export class Exit extends Error {
  constructor(code) {
    super(`the guest exited with ${code}`);
    this.name = "Exit";
    this.code = code;
  }
}

/** The module's import and export interfaces as its descriptors say. */
function readDescriptor(bytes) {
  const d = decode(DESCRIPTOR_LAYOUT, DESCRIPTOR_LAYOUT.type("descriptor"), bytes);
  return {
    package: d.package,
    name: d.name,
    pattern: PATTERNS[d.pattern] ?? String(d.pattern),
    functions: d.functions.map((f) => ({ name: f.name, id: f.id, typeHash: f.type_hash })),
    memories: d.memories.map((m) => ({ name: m.name, access: m.access, offset: m.offset, pages: m.pages })),
    witPackage: d.wit_package ?? "",
    witInterface: d.wit_interface ?? "",
    witVersion: d.wit_version ?? "",
  };
}

/** `snake_case` and `kebab-case` compared alike. */
const same = (a, b) => a.replaceAll("-", "_") === b.replaceAll("-", "_");

/**
 * Compiles `source` (bytes or a WebAssembly.Module), instantiates it with
 * WASI and `options.imports`, and runs the handshake.
 *
 * options:
 * - layout: the module's layout as JSON (`gen ts` output's `layout`, or
 *   `karmem-bridge` host kit's `NAME.layout.json`); needed for the dynamic
 *   codec, not for `callBytes`;
 * - imports: { [interface]: { [function]: (...args) => result } }, IDL names;
 *   with `[resource-drop]R` entries for imported resources;
 * - wasi: an object with `wasiImport` and `initialize(instance)` /
 *   `start(instance)` (node's `WASI`, or `createWasi()` from wasi.js);
 *   without it, a minimal preview1 with no files (wasi.js);
 * - maxMemoryBytes: refuse to run past this much linear memory (checked
 *   after each call and on every host call, traps as a Trap);
 * - rawImports: extra core imports { module: { name: fn } }, called with
 *   `this` = the Guest (link.js serves linked imports so).
 */
export async function load(source, options = {}) {
  const module = source instanceof WebAssembly.Module ? source : await WebAssembly.compile(source);
  return instantiate(module, options);
}

/** [`load`] for an already compiled module (no await needed to call again). */
export async function instantiate(module, options = {}) {
  const guest = new Guest(module, options);
  await guest._start();
  return guest;
}

export class Guest {
  constructor(module, options) {
    this.module = module;
    this.options = options;
    this.layout = options.layout ? (options.layout instanceof Layout ? options.layout : new Layout(options.layout)) : null;
    this.imports = [];
    this.exports = [];
    this.exited = null;
    this.poisoned = null;
  }

  async _start() {
    const { module, options } = this;
    let wasi = options.wasi;
    if (!wasi) {
      const { createWasi } = await import("./wasi.js");
      wasi = createWasi();
    }
    this.wasi = wasi;
    const importObject = { wasi_snapshot_preview1: wasi.wasiImport };
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.kind !== "function") continue;
      if (imp.module === "wasi_snapshot_preview1") continue;
      const extra = options.rawImports?.[imp.module]?.[imp.name];
      // raw imports run with `this` = the guest (so they can reach its memory)
      let fn = extra && ((...args) => extra.apply(this, args));
      if (!fn && imp.module.startsWith("karmem:")) fn = this._importFunction(imp.module.slice("karmem:".length), imp.name);
      if (!fn) throw new KarmemError(`the module imports \`${imp.module}\`/\`${imp.name}\`, which nothing provides`);
      (importObject[imp.module] ??= {})[imp.name] = fn;
    }
    this.instance = await WebAssembly.instantiate(module, importObject);
    const ex = this.instance.exports;
    this.memory = ex.KarmemMemory ?? ex.memory;
    if (!(this.memory instanceof WebAssembly.Memory)) throw new KarmemError("the module exports no memory");
    this.command = typeof ex._start === "function";
    // WASI setup without running anything: node's `initialize` refuses a
    // module with `_start`, so a command gets a view with only its memory.
    if (typeof wasi.initialize === "function") {
      const view = this.command ? { exports: { memory: ex.memory } } : this.instance;
      this._guard(() => wasi.initialize(view));
    }
    if (typeof ex.KarmemInit !== "function") throw new KarmemError("the module exports no `KarmemInit`: not a Karmem-ABI module");
    const counts = this._guard(() => BigInt.asUintN(64, ex.KarmemInit()));
    const nImports = Number(counts >> 32n), nExports = Number(counts & 0xffffffffn);
    for (let i = 0; i < nImports; i++) this.imports.push(readDescriptor(this._buffer(ex.KarmemImport(i))));
    for (let i = 0; i < nExports; i++) this.exports.push(readDescriptor(this._buffer(ex.KarmemExport(i))));
    this._functions = new Map();
    for (const d of this.exports) {
      for (const f of d.functions) this._functions.set(`${d.name}.${f.name}`, { interface: d.name, function: f.name, id: f.id });
    }
  }

  /** A copy of the packed buffer's bytes. */
  _buffer(packed) {
    const p = BigInt.asUintN(64, BigInt(packed));
    const ptr = Number(p & 0xffffffffn), len = Number(p >> 32n);
    if (len === 0) return new Uint8Array(0);
    if (ptr + len > this.memory.buffer.byteLength) throw new KarmemError(`buffer ${ptr}+${len} outside memory`);
    return new Uint8Array(this.memory.buffer, ptr, len).slice();
  }

  /** Runs `f`; a WASI exit becomes Exit, a wasm trap Trap (and the guest unusable). */
  _guard(f) {
    try {
      const result = f();
      this._checkMemory();
      return result;
    } catch (e) {
      const error = this._classify(e);
      if (error instanceof Trap) this.poisoned = error;
      throw error;
    }
  }

  /** Refuses a call after a trap or an exit: the instance's state is unknown. */
  _usable() {
    if (this.exited) throw new KarmemError(`the guest exited (${this.exited.code}): load a fresh instance`);
    if (this.poisoned) throw new KarmemError(`the guest is unusable after an earlier failure: ${this.poisoned.message}`);
  }

  _classify(e) {
    if (e instanceof Exit || e instanceof Trap || e instanceof KarmemError) return e;
    // node:wasi with returnOnExit throws a private symbol; its code is on the WASI object
    if (typeof e === "symbol" && this.wasi && e in this.wasi) return (this.exited = new Exit(this.wasi[e]));
    if (e && typeof e === "object" && e.karmemExit !== undefined) return (this.exited = new Exit(e.karmemExit));
    if (e instanceof WebAssembly.RuntimeError || e instanceof RangeError || e instanceof Error) return new Trap(e);
    return new Trap(new Error(String(e)));
  }

  _checkMemory() {
    const max = this.options.maxMemoryBytes;
    if (max !== undefined && this.memory && this.memory.buffer.byteLength > max) {
      throw new Trap(new Error(`memory limit: ${this.memory.buffer.byteLength} bytes > ${max}`));
    }
  }

  /** The core function serving import `karmem:iface`/`name`. */
  _importFunction(iface, name) {
    const table = this.options.imports?.[iface] ?? {};
    if (name.startsWith("[resource-drop]")) {
      const handler = table[name] ?? table[`[resource-drop]${name.slice(15).replaceAll("-", "_")}`];
      return (handle) => {
        if (!handler) throw new KarmemError(`no host function for \`${iface}\`/\`${name}\``);
        handler(handle >>> 0);
      };
    }
    const key = Object.keys(table).find((k) => same(k, name));
    const handler = key === undefined ? undefined : table[key];
    return (ptr, len) => {
      if (!handler) throw new KarmemError(`no host function for \`${iface}\`/\`${name}\``);
      if (!this.layout) throw new KarmemError("serving an import needs the module's layout");
      const fl = this.layout.fn(iface, name);
      const p = ptr >>> 0, l = len >>> 0;
      if (p + l > this.memory.buffer.byteLength) throw new KarmemError("import argument buffer outside memory");
      const bytes = new Uint8Array(this.memory.buffer, p, l).slice();
      const args = decodeFields(this.layout, fl.params, bytes);
      const result = handler(...args);
      const resultType = this.layout.get(fl.results);
      if (resultType.fields.length === 0) return 0n;
      const values = resultType.fields.length === 1 ? [result] : result;
      const out = encodeFields(this.layout, fl.results, values);
      this._checkMemory();
      return this._put(out);
    };
  }

  /** Copies `bytes` into guest memory allocated with `KarmemAlloc`; returns the packed buffer. */
  _put(bytes) {
    if (bytes.length === 0) return 0n;
    const ptr = this.instance.exports.KarmemAlloc(bytes.length, 64) >>> 0;
    new Uint8Array(this.memory.buffer, ptr, bytes.length).set(bytes);
    return (BigInt(bytes.length) << 32n) | BigInt(ptr);
  }

  /** The exported function `iface.name` (IDL names; kebab-case accepted). */
  describe(iface, name) {
    const direct = this._functions.get(`${iface}.${name}`);
    if (direct) return direct;
    for (const f of this._functions.values()) if (same(f.interface, iface) && same(f.function, name)) return f;
    throw new KarmemError(`the guest exports no function \`${iface}.${name}\``);
  }

  /**
   * Calls `iface.name` with an argument message and returns the result
   * message's bytes (a copy): the typed path, for `gen ts` builders and views.
   */
  callBytes(iface, name, message) {
    this._usable();
    const f = this.describe(iface, name);
    const ex = this.instance.exports;
    return this._guard(() => {
      let ptr = 0;
      if (message.length > 0) {
        ptr = ex.KarmemAlloc(message.length, 64) >>> 0;
        new Uint8Array(this.memory.buffer, ptr, message.length).set(message);
      }
      const direct = ex[`${f.interface}.${f.function}`];
      const packed = typeof direct === "function" ? direct(ptr, message.length) : ex.KarmemCall(f.id, ptr, message.length);
      const out = this._buffer(packed);
      if (ptr !== 0) ex.KarmemFree(ptr, message.length, 64);
      return out;
    });
  }

  /**
   * Calls `iface.name` with its arguments as values (docs/HOSTS.md) and
   * returns its result (undefined without one, an array for several).
   */
  call(iface, name, args = []) {
    if (!this.layout) throw new KarmemError("calling with values needs the module's layout (options.layout)");
    const f = this.describe(iface, name);
    const fl = this.layout.fn(f.interface, f.function);
    const message = this.layout.get(fl.params).fields.length === 0 ? new Uint8Array(0) : encodeFields(this.layout, fl.params, args);
    const out = this.callBytes(f.interface, f.function, message);
    const results = decodeFields(this.layout, fl.results, out);
    return results.length === 0 ? undefined : results.length === 1 ? results[0] : results;
  }

  /** Calls a function by its `KarmemCall` id with an argument message. */
  callId(id, message) {
    this._usable();
    const ex = this.instance.exports;
    return this._guard(() => {
      let ptr = 0;
      if (message.length > 0) {
        ptr = ex.KarmemAlloc(message.length, 64) >>> 0;
        new Uint8Array(this.memory.buffer, ptr, message.length).set(message);
      }
      const out = this._buffer(ex.KarmemCall(id, ptr, message.length));
      if (ptr !== 0) ex.KarmemFree(ptr, message.length, 64);
      return out;
    });
  }

  /**
   * Drops an owned handle of the guest's resource `resource` (the export
   * named `...[resource-drop]<resource>`, found by the resource's name).
   */
  drop(resource, handle, iface) {
    this._usable();
    const ex = this.instance.exports;
    const names = Object.keys(ex).filter((n) => {
      const at = n.indexOf("[resource-drop]");
      return at >= 0 && same(n.slice(at + 15), resource);
    });
    const pick = names.length > 1 && iface ? names.find((n) => n.includes(iface)) ?? names[0] : names[0];
    if (!pick) throw new KarmemError(`the guest exports no drop for resource \`${resource}\``);
    this._guard(() => ex[pick](handle));
  }

  /** Runs a command's `_start`; returns its exit code (0 when it returns). */
  run() {
    const ex = this.instance.exports;
    if (typeof ex._start !== "function") throw new KarmemError("not a command: no `_start`");
    try {
      this._guard(() => ex._start());
      return 0;
    } catch (e) {
      if (e instanceof Exit) return e.code;
      throw e;
    }
  }

  /** Bytes of linear memory the guest has now. */
  get memoryBytes() {
    return this.memory.buffer.byteLength;
  }
}

export { WASM_PAGE };
