// Containment in hosts/js: a call that never returns is stopped by the
// worker runner's deadline (worker.js) while other guests keep working, and
// memory growth past `maxMemoryBytes` traps (host.js). Usage:
// node test/limits.mjs DIR, where DIR has `limits.wasm` and
// `limits.layout.json`: interface `limits` with `spin()` (loops forever),
// `answer() -> u32` (42) and `grow(pages: u32) -> i32` (memory.grow),
// lowered by xtask/tests/js_host.rs.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { load, Trap, KarmemError } from "../src/index.js";
import { WorkerGuest, runInWorker, Timeout } from "../src/worker.js";

const dir = process.argv[2];
if (!dir) throw new Error("usage: node test/limits.mjs DIR");
const bytes = readFileSync(join(dir, "limits.wasm"));
const layout = readFileSync(join(dir, "limits.layout.json"), "utf8");
const module = await WebAssembly.compile(bytes);
const checks = [];

// A deadline stops an infinite loop; the worker is gone, a bystander is not.
{
  const runaway = await WorkerGuest.load(module, { layout, timeoutMs: 30_000 });
  const bystander = await WorkerGuest.load(bytes, { layout });
  assert.deepEqual(runaway.exports, [{ name: "limits", functions: ["spin", "answer", "grow"] }]);
  const started = Date.now();
  await assert.rejects(runaway.call("limits", "spin", [], { timeoutMs: 200 }), (e) => e instanceof Timeout && e.ms === 200);
  const took = Date.now() - started;
  assert.ok(took < 20_000, `the deadline of 200 ms took ${took} ms`);
  await assert.rejects(runaway.call("limits", "answer"), Timeout, "a timed-out guest refuses calls");
  assert.equal(await bystander.call("limits", "answer"), 42);
  await bystander.terminate();
  checks.push("timeout");
}

// The one-call helper: a result within the deadline, a Timeout past it.
{
  assert.equal(await runInWorker(bytes, "limits", "answer", [], { layout, timeoutMs: 30_000 }), 42);
  await assert.rejects(runInWorker(bytes, "limits", "spin", [], { layout, timeoutMs: 100 }), Timeout);
  checks.push("runInWorker");
}

const probe = await load(module, { layout });
const base = probe.memoryBytes;

// A trap in the worker comes back as a Trap, and the guest refuses further calls.
{
  const guest = await WorkerGuest.load(bytes, { layout, maxMemoryBytes: base });
  await assert.rejects(guest.call("limits", "grow", [1]), (e) => e instanceof Trap && /memory limit/.test(e.message));
  await assert.rejects(guest.call("limits", "answer"), /unusable after an earlier failure/);
  await guest.terminate();
  checks.push("trap in a worker");
}

// Memory limits, in-thread: growth within the limit works, past it traps,
// and the guest is unusable afterwards.
{
  const guest = await load(module, { layout, maxMemoryBytes: base + 2 * 65536 });
  assert.equal(guest.call("limits", "grow", [1]), base / 65536, "memory.grow returns the old size in pages");
  assert.equal(guest.call("limits", "grow", [1]), base / 65536 + 1);
  assert.throws(() => guest.call("limits", "grow", [1]), (e) => e instanceof Trap && /memory limit/.test(e.message));
  assert.throws(() => guest.call("limits", "answer"), (e) => e instanceof KarmemError && /unusable after an earlier failure/.test(e.message));
  assert.equal(probe.call("limits", "answer"), 42, "other instances are unaffected");
  checks.push("memory limit");
}

console.log(`limits: ${checks.length} checks pass (${checks.join(", ")})`);
