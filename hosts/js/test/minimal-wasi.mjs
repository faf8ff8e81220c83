// The minimal preview1 of wasi.js (what the host uses without `node:wasi`,
// e.g. in browsers) serves the kit's `wasi-reactor` guest: arguments,
// environment, stdout and stderr, clocks, random bytes and exits agree with
// the reference outcomes; file calls, which it does not offer, fail inside
// the guest as errors, never as traps.
//
// Usage: node hosts/js/test/minimal-wasi.mjs KIT_DIR

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { load, Exit, Layout } from "../src/index.js";
import { createWasi } from "../src/wasi.js";

const kit = process.argv[2];
if (!kit) throw new Error("usage: node test/minimal-wasi.mjs KIT_DIR");
const index = JSON.parse(readFileSync(join(kit, "index.json"), "utf8"));
const entry = index.fixtures.find((f) => f.name === "wasi-reactor");
assert.ok(entry, "the kit has no `wasi-reactor` fixture");
const layout = new Layout(readFileSync(join(kit, entry.layout), "utf8"));
const module = await WebAssembly.compile(readFileSync(join(kit, entry.module)));
const { cases } = JSON.parse(readFileSync(join(kit, entry.cases), "utf8"));

const decoder = new TextDecoder();
let output = [];
/** Appends a write, joined with the previous one of the same stream (stderr is unbuffered). */
const write = (stream, bytes) => {
  const last = output[output.length - 1];
  if (last && stream in last) last[stream] += decoder.decode(bytes);
  else output.push({ [stream]: decoder.decode(bytes) });
};
const fresh = () =>
  load(module, {
    layout,
    wasi: createWasi({
      args: index.wasi.args,
      env: index.wasi.env,
      stdout: (bytes) => write("stdout", bytes),
      stderr: (bytes) => write("stderr", bytes),
    }),
  });

let guest = await fresh();
let compared = 0, fileCalls = 0;
for (const c of cases) {
  const { interface: iface, function: fn, args } = c.call;
  output = [];
  if (fn.includes("file")) {
    // no files here: the guest gets an error value back
    const result = guest.call(iface, fn, args);
    assert.ok(result && typeof result === "object" && "err" in result, `${c.text}: expected an error, got ${JSON.stringify(result)}`);
    fileCalls += 1;
    continue;
  }
  let outcome;
  try {
    const result = guest.call(iface, fn, args);
    outcome = { returns: result === undefined ? [] : [result] };
  } catch (e) {
    if (!(e instanceof Exit)) throw new Error(`${c.text}: ${e.stack ?? e}`);
    outcome = { exit: e.code };
    guest = await fresh();
  }
  assert.deepEqual(outcome, c.expect, c.text);
  assert.deepEqual(output, c.effects, `${c.text}: output`);
  compared += 1;
}
assert.ok(compared >= 12 && fileCalls >= 3, `only ${compared} cases and ${fileCalls} file calls ran`);
console.log(`minimal wasi: ${compared} cases agree, ${fileCalls} file calls fail as errors`);
