// Linking lowered guests to each other by pattern (docs/RUNTIME.md,
// "Linking guests by pattern"; paper §4.3.2): an importer's `karmem:I`/`f`
// import is served by modules that export interface `I`, its argument
// message copied from the importer's memory into the exporter's and the
// result message back, with no decoding on the way.
//
// Owns: `Composition` (add modules, set patterns, instantiate an importer).
// Patterns: direct (a private instance of the one exporter), fanout (a
// private instance of every exporter, each called in turn, the first
// success returned, all results to `onFanout`), singleton (one instance
// shared by every importer and the host), pool (N shared instances, round
// robin, a failed member replaced). Exporters are matched by their WIT
// identity when descriptors carry one (`wit_package`, `wit_interface`,
// `wit_version`), else by interface name. No plugs or layers: one
// exporter per interface unless the pattern is fanout.

import { KarmemError } from "./codec.js";
import { load, instantiate, Trap } from "./host.js";

const identity = (d) => (d.witInterface ? `${d.witPackage}/${d.witInterface}@${d.witVersion}` : d.name);

export class Composition {
  constructor() {
    this.modules = [];
    this.patterns = new Map();
    this.shared = new Map();
    this.poolSize = 2;
  }

  /** Registers a lowered module (bytes or WebAssembly.Module) under `name`, with its load options. */
  async add(name, source, options = {}) {
    const module = source instanceof WebAssembly.Module ? source : await WebAssembly.compile(source);
    // one throwaway instance tells what it exports
    const probe = await instantiate(module, options);
    this.modules.push({ name, module, options, exports: probe.exports });
    return this;
  }

  /** Sets interface `iface`'s pattern: "direct", "fanout", "singleton" or "pool" (with `instances`). */
  setPattern(iface, pattern, instances) {
    if (!["direct", "fanout", "singleton", "pool"].includes(pattern)) throw new KarmemError(`unknown pattern \`${pattern}\``);
    this.patterns.set(iface, pattern);
    if (pattern === "pool" && instances) this.poolSize = instances;
  }

  _exporters(descriptor, importer) {
    const id = identity(descriptor);
    return this.modules.filter((m) => m !== importer && m.exports.some((d) => identity(d) === id || d.name === descriptor.name));
  }

  /** The shared instance (singleton) of `module`. */
  async _singleton(module) {
    if (!this.shared.has(module)) this.shared.set(module, await this._instance(module));
    return this.shared.get(module);
  }

  async _instance(module) {
    return instantiate(module.module, await this._linkOptions(module));
  }

  /** A module's options with its own imports linked too. */
  async _linkOptions(module) {
    return { ...module.options, rawImports: await this._routes(module, module.options) };
  }

  /**
   * Instantiates `name` (a registered module) with its `karmem:` imports
   * served by the other modules; imports no module exports stay with
   * `options.imports` host functions. `onFanout(iface, fn, results)` sees
   * every fanout call's results (bytes, or the Error of a failed exporter).
   */
  async instantiate(name, options = {}) {
    const importer = this.modules.find((m) => m.name === name);
    if (!importer) throw new KarmemError(`no module \`${name}\` in the composition`);
    const merged = { ...importer.options, ...options };
    const linked = new Map();
    const guest = await instantiate(importer.module, { ...merged, rawImports: await this._routes(importer, merged, linked) });
    /** The guests serving import `iface` of this importer (fanout: every one, in order). */
    guest.exporters = (iface) => linked.get(iface) ?? [];
    return guest;
  }

  /** The pool serving `iface` (pattern "pool"): its members and how many were replaced. */
  pool(iface) {
    const [module] = this.modules.filter((m) => m.exports.some((d) => d.name === iface));
    const pool = module && this.shared.get(`pool:${module.name}`);
    if (!pool) throw new KarmemError(`no pool serves \`${iface}\``);
    return pool;
  }

  /** The host's handle on the singleton exporter of `iface`. */
  async singleton(iface) {
    const [module] = this.modules.filter((m) => m.exports.some((d) => d.name === iface));
    if (!module) throw new KarmemError(`no module exports \`${iface}\``);
    return this._singleton(module);
  }

  async _routes(importer, options, linked = new Map()) {
    const probe = await instantiate(importer.module, { ...options, imports: options.imports ?? {}, rawImports: stubs(importer.module) });
    const routes = {};
    for (const d of probe.imports) {
      const exporters = this._exporters(d, importer);
      if (exporters.length === 0) continue;
      const pattern = this.patterns.get(d.name) ?? d.pattern;
      if (pattern !== "fanout" && exporters.length > 1) {
        throw new KarmemError(`interface \`${d.name}\` is exported by ${exporters.map((m) => m.name).join(" and ")}: ambiguous`);
      }
      const target = await this._target(pattern, exporters);
      linked.set(d.name, target.guests);
      const table = (routes[`karmem:${d.name}`] = {});
      for (const f of d.functions) {
        // `this` is the importer's Guest (host.js calls raw imports so)
        table[f.name] = function (ptr, len) {
          const caller = this;
          const bytes = new Uint8Array(caller.memory.buffer, ptr >>> 0, len >>> 0).slice();
          const out = target.call(d.name, f.name, bytes, options.onFanout);
          return caller._put(out);
        };
      }
      for (const imp of WebAssembly.Module.imports(importer.module)) {
        if (imp.module === `karmem:${d.name}` && imp.name.startsWith("[resource-drop]")) {
          table[imp.name] = (handle) => target.drop(imp.name.slice(15), handle >>> 0);
        }
      }
    }
    return routes;
  }

  async _target(pattern, exporters) {
    switch (pattern) {
      case "direct": {
        const guest = await this._instance(exporters[0]);
        return { guests: [guest], call: (i, f, bytes) => guest.callBytes(i, f, bytes), drop: (r, h) => guest.drop(r, h, undefined) };
      }
      case "singleton": {
        const guest = await this._singleton(exporters[0]);
        return { guests: [guest], call: (i, f, bytes) => guest.callBytes(i, f, bytes), drop: (r, h) => guest.drop(r, h, undefined) };
      }
      case "fanout": {
        const guests = await Promise.all(exporters.map((m) => this._instance(m)));
        return {
          guests,
          call: (i, f, bytes, onFanout) => {
            // a member that failed before refuses the call (Guest._usable)
            const results = guests.map((g) => {
              try {
                return g.callBytes(i, f, bytes);
              } catch (e) {
                return e;
              }
            });
            onFanout?.(i, f, results);
            const first = results.find((r) => r instanceof Uint8Array);
            if (!first) throw new Trap(new Error(`every exporter of \`${i}\` failed`));
            return first;
          },
          drop: (r) => {
            throw new KarmemError(`cannot drop a \`${r}\` handle under fanout: the host does not know which exporter owns it`);
          },
        };
      }
      case "pool": {
        const module = exporters[0];
        const key = `pool:${module.name}`;
        if (!this.shared.has(key)) {
          this.shared.set(key, { members: await Promise.all(Array.from({ length: this.poolSize }, () => this._instance(module))), next: 0, replaced: 0 });
        }
        const pool = this.shared.get(key);
        return {
          guests: pool.members,
          call: (i, f, bytes) => {
            const n = pool.next++ % pool.members.length;
            try {
              return pool.members[n].callBytes(i, f, bytes);
            } catch (e) {
              // replaced before its next call
              pool.replaced++;
              this._instance(module).then((g) => (pool.members[n] = g));
              throw e;
            }
          },
          drop: (r) => {
            throw new KarmemError(`cannot drop a \`${r}\` handle under pool: any member may own it`);
          },
        };
      }
    }
    throw new KarmemError(`unknown pattern \`${pattern}\``);
  }
}

/** Core imports that trap, to instantiate an importer only to read its descriptors. */
function stubs(module) {
  const out = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind === "function" && imp.module.startsWith("karmem:")) {
      (out[imp.module] ??= {})[imp.name] = () => {
        throw new KarmemError("not linked yet");
      };
    }
  }
  return out;
}

export { load };
