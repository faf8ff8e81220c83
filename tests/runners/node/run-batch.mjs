// karmem-bridge's conformance runner for node (V8 + node:wasi preview1). It
// owns running lowered core wasm modules on node and reporting each run as
// one line, with the same protocol as the wazero runner (tests/runners/wazero).
//
// Usage:
//   node run-batch.mjs [--interpreter] --batch
//   node run-batch.mjs [--interpreter] MODULE_PATH EXPORT_NAME
// (--interpreter is accepted and ignored: V8 is V8.)
//
// With --batch, each stdin line is MODULE_PATH<TAB>EXPORT_NAME and gets
// exactly one stdout line. Each line runs in a fresh instance with a fresh
// WASI: no args, no env, no preopens, empty stdin, the guest's stdout and
// stderr on this process's stderr. After `_initialize` and `KarmemInit` (when
// exported), EXPORT_NAME is called with (0, 0) if it is (i32, i32) -> i64 (the
// Karmem ABI, the empty message) or with nothing if it is () -> (). The line:
//   ok              the call returned
//   trap: MESSAGE   the guest trapped (a WebAssembly.RuntimeError, or a stack overflow)
//   exit: CODE      the guest called proc_exit
//   error: MESSAGE  anything else: unreadable file, compile or instantiate
//                   failure (e.g. more than one memory), missing export, bad type
// The single-shot form prints the same line and exits 0 for `ok`, 1 otherwise.

import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { createInterface } from "node:readline";

// Keep node's "WASI is an experimental feature" warning off stderr, which is the guest's.
process.removeAllListeners("warning");
const { WASI } = await import("node:wasi");

// JS cannot see a wasm function's type, but linking checks it: a module that
// imports `m.f` with the given type links only against a function of that type.
// `type` is the encoded parameter and result vectors.
const importer = (type) =>
  new WebAssembly.Module(Uint8Array.of(
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, type.length + 2, 0x01, 0x60, ...type, // type section: one function type
    0x02, 0x07, 0x01, 0x01, 0x6d, 0x01, 0x66, 0x00, 0x00, // import section: func "m" "f" of type 0
  ));
const KARMEM = importer([2, 0x7f, 0x7f, 1, 0x7e]); // (i32, i32) -> i64
const UNIT = importer([0, 0]); // () -> ()
const KARMEM_INIT = importer([0, 1, 0x7e]); // () -> i64
const hasType = (f, importerModule) => {
  try {
    new WebAssembly.Instance(importerModule, { m: { f } });
    return true;
  } catch {
    return false;
  }
};

class ProcExit {
  constructor(code) {
    this.code = code >>> 0;
  }
}

const oneLine = (error) => String(error && error.message !== undefined ? error.message : error).split("\n")[0].trim();

// `exit: CODE` for proc_exit, `trapPrefix MESSAGE` for a trap, else `error: MESSAGE`.
function outcome(error, trapPrefix) {
  if (error instanceof ProcExit) return `exit: ${error.code}`;
  if (error instanceof WebAssembly.RuntimeError || error instanceof RangeError) {
    return `${trapPrefix}${oneLine(error)}`;
  }
  return `error: ${oneLine(error)}`;
}

// Runs one module's export in a fresh instance and returns its result line.
function run(path, exportName) {
  let bytes;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    return `error: ${oneLine(error)}`;
  }
  let module;
  try {
    module = new WebAssembly.Module(bytes);
  } catch (error) {
    return `error: compile: ${oneLine(error)}`;
  }

  const stdin = openSync("/dev/null", "r");
  try {
    const wasi = new WASI({ version: "preview1", args: [], env: {}, preopens: {}, stdin, stdout: 2, stderr: 2 });
    // proc_exit throws a ProcExit through the guest's frames to here.
    const wasiImport = Object.create(wasi.wasiImport, {
      proc_exit: { value: (code) => { throw new ProcExit(code); } },
    });
    let instance;
    try {
      instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: wasiImport });
    } catch (error) {
      return error instanceof ProcExit ? outcome(error) : `error: instantiate: ${oneLine(error)}`;
    }
    const { exports } = instance;
    // Hand WASI the guest's memory (an empty one if it exports none), without
    // letting `initialize` call `_initialize`: that is done below.
    const memory = exports.memory instanceof WebAssembly.Memory ? exports.memory : new WebAssembly.Memory({ initial: 0 });
    wasi.initialize({ exports: { memory } });

    // Check every type before running anything.
    const target = exports[exportName];
    if (typeof target !== "function") return `error: no exported function ${JSON.stringify(exportName)}`;
    const args = hasType(target, KARMEM) ? [0, 0] : hasType(target, UNIT) ? [] : null;
    if (args === null) {
      return `error: ${JSON.stringify(exportName)} has a type other than (i32, i32) -> (i64) or () -> ()`;
    }
    const inits = [["_initialize", UNIT, "()"], ["KarmemInit", KARMEM_INIT, "(i64)"]]
      .filter(([name]) => exports[name] !== undefined);
    for (const [name, type, results] of inits) {
      if (typeof exports[name] !== "function" || !hasType(exports[name], type)) {
        return `error: ${JSON.stringify(name)} is not () -> ${results}`;
      }
    }

    for (const [name] of inits) {
      try {
        exports[name]();
      } catch (error) {
        return outcome(error, `trap: ${name}: `);
      }
    }
    try {
      target(...args);
    } catch (error) {
      return outcome(error, "trap: ");
    }
    return "ok";
  } catch (error) {
    return `error: ${oneLine(error)}`;
  } finally {
    closeSync(stdin);
  }
}

const usage = "usage: node run-batch.mjs [--interpreter] (--batch | MODULE_PATH EXPORT_NAME)";
const flags = process.argv.slice(2).filter((arg) => arg === "--interpreter" || arg === "--batch");
const positional = process.argv.slice(2).filter((arg) => !flags.includes(arg));
const batch = flags.includes("--batch");

if (batch && positional.length === 0) {
  for await (const text of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    const tab = text.indexOf("\t");
    const line = tab < 0
      ? "error: malformed batch line, expected MODULE_PATH<TAB>EXPORT_NAME"
      : run(text.slice(0, tab), text.slice(tab + 1));
    writeSync(1, `${line}\n`);
  }
} else if (!batch && positional.length === 2) {
  const line = run(positional[0], positional[1]);
  writeSync(1, `${line}\n`);
  process.exitCode = line === "ok" ? 0 : 1;
} else {
  process.stderr.write(`${usage}\n`);
  process.exitCode = 2;
}
