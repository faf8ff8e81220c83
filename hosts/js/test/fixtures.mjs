// Every case of the host kit (`cargo run -p xtask -- host-kit KIT`) through
// the JavaScript host, compared value for value with the reference outcome:
// results, traps, exits, host calls (the fixture host functions of
// tests/src/host.rs, reimplemented below), stdout, stderr and sandbox files.
//
// Usage: node hosts/js/test/fixtures.mjs KIT_DIR [FIXTURE...]
// Exits 1 on the first fixture that differs, naming the case.

import { readFileSync, writeFileSync, mkdtempSync, openSync, closeSync, readdirSync, statSync, rmSync, fstatSync, readSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { WASI } from "node:wasi";
import { load, Trap, Exit, Layout, toJson } from "../src/index.js";

const [kit, ...only] = process.argv.slice(2);
if (!kit) {
  console.error("usage: node fixtures.mjs KIT_DIR [FIXTURE...]");
  process.exit(2);
}
const index = JSON.parse(readFileSync(join(kit, "index.json"), "utf8"));

/** Deep equality of JSON values; numbers with Object.is (so -0 differs from 0). */
function equal(a, b) {
  if (typeof a === "number" && typeof b === "number") return Object.is(a, b) || a === b && a !== 0;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => equal(x, b[i]));
  if (a && typeof a === "object") {
    if (!b || typeof b !== "object" || Array.isArray(b)) return false;
    const ka = Object.keys(a).sort(), kb = Object.keys(b).sort();
    return equal(ka, kb) && ka.every((k) => equal(a[k], b[k]));
  }
  return a === b;
}

const show = (v) => {
  const text = JSON.stringify(v);
  return text && text.length > 300 ? text.slice(0, 300) + `... (${text.length} chars)` : text;
};

/** Files under `dir`, by path relative to it, with their bytes. */
function snapshot(dir) {
  const files = new Map();
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else files.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return files;
}

/** New bytes of a capture file since `state.seen`. */
function fresh(fd, state) {
  const size = fstatSync(fd).size;
  if (size <= state.seen) return null;
  const buf = Buffer.alloc(size - state.seen);
  readSync(fd, buf, 0, buf.length, state.seen);
  state.seen = size;
  return buf.toString("utf8");
}

/** Replaces handles in a decoded value of type `ty` with labels, as the kit shows them. */
function label(layout, ty, value, bind, state) {
  const t = layout.get(ty);
  switch (t.k) {
    case "handle":
      if (bind && !state.bound) {
        state.bound = true;
        state.handles.set(bind, { handle: value });
        return bind;
      }
      return t.borrow ? "borrow" : "own";
    case "array":
      if (t.map) return value.map(([k, v]) => {
        const e = layout.get(t.elem);
        return [label(layout, e.fields[0].ty, k, bind, state), label(layout, e.fields[1].ty, v, bind, state)];
      });
      return value.map((v) => label(layout, t.elem, v, bind, state));
    case "fixed":
      return value.map((v) => label(layout, t.elem, v, bind, state));
    case "struct":
      if (Array.isArray(value)) return value.map((v, i) => label(layout, t.fields[i].ty, v, bind, state));
      return Object.fromEntries(t.fields.map((f) => [f.name, label(layout, f.ty, value[f.name], bind, state)]));
    case "option":
      return value === null ? null : { some: label(layout, t.some, value.some, bind, state) };
    case "result": {
      const ok = "ok" in value;
      const side = ok ? t.ok : t.err;
      const v = ok ? value.ok : value.err;
      const inner = side === null ? null : label(layout, side, v, bind, state);
      return ok ? { ok: inner } : { err: inner };
    }
    case "union": {
      const [name] = Object.keys(value);
      const c = t.cases.find((x) => x.name === name);
      return { [name]: c.ty === null ? null : label(layout, c.ty, value[name], bind, state) };
    }
    default:
      return toJson(value);
  }
}

/** The fixture host functions of tests/src/host.rs, recording effects. */
function fixtureHost(layout, effects) {
  const state = { nextId: 0, nextRep: 0, tallies: new Map() };
  const record = (fn, args, result) => {
    const types = layout.get(layout.fn("host", fn).params).fields.map((f) => f.ty);
    const call = { interface: "host", function: fn, args: args.map((a, i) => (layout.get(types[i]).k === "handle" ? "handle" : toJson(a))) };
    if (result !== undefined) {
      const [rt] = layout.get(layout.fn("host", fn).results).fields.map((f) => f.ty);
      call.result = layout.get(rt).k === "handle" ? "handle" : toJson(result);
    }
    effects.push({ host: call });
    return result;
  };
  const tally = (start) => {
    state.nextRep += 1;
    state.tallies.set(state.nextRep, start);
    return state.nextRep;
  };
  return {
    host: {
      log: (line) => record("log", [line]),
      emit: (...args) => record("emit", args),
      next_id: () => record("next_id", [], (state.nextId += 1)),
      lines: (count, prefix) => record("lines", [count, prefix], Array.from({ length: count }, (_, i) => `${prefix}${i}`)),
      tally_new: (start) => record("tally_new", [start], tally(BigInt(start))),
      tally_named: (name) => record("tally_named", [name], tally(BigInt(Buffer.byteLength(name)))),
      tally_add: (handle, n) => {
        const total = BigInt.asUintN(64, state.tallies.get(handle) + BigInt(n));
        state.tallies.set(handle, total);
        return record("tally_add", [handle, n], total);
      },
      "[resource-drop]tally": (handle) => {
        const total = state.tallies.get(handle);
        state.tallies.delete(handle);
        effects.push({ host_drop: { resource: "tally", state: String(total) } });
      },
    },
  };
}

async function runFixture(entry) {
  const layout = new Layout(readFileSync(join(kit, entry.layout), "utf8"));
  const module = await WebAssembly.compile(readFileSync(join(kit, entry.module)));
  const { cases } = JSON.parse(readFileSync(join(kit, entry.cases), "utf8"));
  const work = mkdtempSync(join(tmpdir(), `karmem-js-${entry.name}-`));
  const sandbox = join(work, "sandbox");
  const preopens = index.wasi.preopens["/sandbox"];
  readdirSync(work); // exists
  (await import("node:fs")).mkdirSync(sandbox);
  for (const [name, text] of Object.entries(preopens)) writeFileSync(join(sandbox, name), text);
  const outFd = openSync(join(work, "stdout"), "w+"), errFd = openSync(join(work, "stderr"), "w+");
  const outState = { seen: 0 }, errState = { seen: 0 };
  let files = snapshot(sandbox);
  let guest = null;
  let handles = new Map();
  let effects = [];
  const fresh_instance = async () => {
    const wasi = new WASI({
      version: "preview1",
      args: index.wasi.args,
      env: index.wasi.env,
      preopens: { "/sandbox": sandbox },
      stdout: outFd,
      stderr: errFd,
      returnOnExit: true,
    });
    handles = new Map();
    return load(module, { layout, wasi, imports: fixtureHost(layout, effects) });
  };
  let compared = 0;
  try {
    for (const c of cases) {
      effects.length = 0;
      if (!guest) guest = await fresh_instance();
      let outcome;
      try {
        if (c.start) {
          const code = guest.run();
          outcome = code === 0 ? { returns: [{ ok: null }] } : code === 1 ? { returns: [{ err: null }] } : { exit: code };
        } else if (c.drop) {
          const bound = handles.get(c.drop.handle);
          if (!bound) throw new Error(`${c.drop.handle} is not bound`);
          handles.delete(c.drop.handle);
          guest.drop(c.drop.resource, bound.handle, c.drop.interface);
          outcome = { returns: [] };
        } else {
          const { interface: iface, function: fn, args, bind } = c.call;
          const fl = layout.fn(iface, fn);
          const params = layout.get(fl.params).fields;
          const values = args.map((a, i) => {
            if (layout.get(params[i].ty).k === "handle") {
              const bound = handles.get(a);
              if (!bound) throw new Error(`${a} is not bound`);
              return bound.handle;
            }
            return a;
          });
          const result = guest.call(iface, fn, values);
          const types = layout.get(fl.results).fields.map((f) => f.ty);
          const state = { bound: false, handles };
          const results = types.length === 0 ? [] : types.length === 1 ? [result] : result;
          outcome = { returns: results.map((r, i) => label(layout, types[i], r, bind, state)) };
        }
      } catch (e) {
        if (e instanceof Trap) outcome = { trap: true };
        else if (e instanceof Exit) outcome = { exit: e.code };
        else throw new Error(`line ${c.line} \`${c.text}\`: ${e.stack ?? e}`);
        guest = null;
      }
      const seen = [...effects.map((e) => (e.host ? { host: { ...e.host } } : e))];
      const out = fresh(outFd, outState), err = fresh(errFd, errState);
      if (out !== null) seen.push({ stdout: out });
      if (err !== null) seen.push({ stderr: err });
      const now = snapshot(sandbox);
      for (const [path, bytes] of [...now].sort(([a], [b]) => (a < b ? -1 : 1))) {
        const before = files.get(path);
        if (!before || !before.equals(bytes)) seen.push({ file: { path: `/sandbox/${path}`, contents: bytes.toString("utf8") } });
      }
      files = now;
      const expectedEffects = c.effects.map((e) => (e.host ? { host: { ...e.host, wit: undefined } } : e)).map((e) => {
        if (e.host) delete e.host.wit;
        return e;
      });
      if (!equal(outcome, c.expect)) {
        throw new Error(`${entry.name} line ${c.line} \`${c.text}\`:\n  expected ${show(c.expect)}\n  got      ${show(outcome)}`);
      }
      if (!equal(seen, expectedEffects)) {
        throw new Error(`${entry.name} line ${c.line} \`${c.text}\`: effects differ\n  expected ${show(expectedEffects)}\n  got      ${show(seen)}`);
      }
      compared += 1;
    }
  } finally {
    closeSync(outFd);
    closeSync(errFd);
    rmSync(work, { recursive: true, force: true });
  }
  return compared;
}

// Without fixture names, each fixture runs in a child process of its own:
// V8 reserves address space for every wasm memory and returns it late, and
// hundreds of fresh instances in one process exhaust it.
if (only.length === 0) {
  const { spawnSync } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  let total = 0;
  for (const entry of index.fixtures) {
    const child = spawnSync(process.execPath, ["--no-warnings", fileURLToPath(import.meta.url), kit, entry.name], { encoding: "utf8" });
    process.stderr.write(child.stderr);
    if (child.status !== 0) {
      console.error(`FAIL ${entry.name} (exit ${child.status}${child.signal ? `, ${child.signal}` : ""})`);
      process.exit(1);
    }
    total += Number(/(\d+) cases/.exec(child.stdout)?.[1] ?? 0);
  }
  console.log(`js host: ${total} cases of ${index.fixtures.length} fixtures agree`);
  process.exit(0);
}

let total = 0;
const names = [];
for (const entry of index.fixtures) {
  if (only.length > 0 && !only.includes(entry.name)) continue;
  try {
    total += await runFixture(entry);
    names.push(entry.name);
  } catch (e) {
    console.error(`FAIL ${e.message}`);
    process.exit(1);
  }
}
console.log(`js host: ${total} cases of ${names.length} fixtures agree (${names.join(", ")})`);
