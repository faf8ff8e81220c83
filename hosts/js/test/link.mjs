// Linking lowered guests by pattern through hosts/js's Composition (link.js),
// on the host kit's `linked-counter` (exports `counter`: a running total per
// instance) and `linked-client` (imports `counter`; `bump(amount, times)`
// calls `incr` `times` times, `read` calls `get`). The same values as the
// Rust runtime's runtime/tests/patterns.rs for direct, singleton, fanout and
// pool. Usage: node test/link.mjs KIT_DIR (`xtask host-kit`).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Composition, Layout, decodeFields } from "../src/index.js";

const kit = process.argv[2];
if (!kit) throw new Error("usage: node test/link.mjs KIT_DIR");
const read = (name) => readFileSync(join(kit, name));
const counter = { bytes: read("linked-counter.wasm"), layout: new Layout(read("linked-counter.layout.json").toString()) };
const client = { bytes: read("linked-client.wasm"), layout: new Layout(read("linked-client.layout.json").toString()) };

const bump = (g, amount, times) => g.call("client", "bump", [amount, times]);
const readTotal = (g) => g.call("client", "read", []);
const get = (g) => g.call("counter", "get", []);
const incr = (g, amount) => g.call("counter", "incr", [amount]);

async function composition(counters = ["counter"]) {
  const c = new Composition();
  for (const name of counters) await c.add(name, counter.bytes, { layout: counter.layout });
  await c.add("client", client.bytes, { layout: client.layout });
  return c;
}

const results = [];
async function check(name, f) {
  await f();
  results.push(name);
}

await check("direct", async () => {
  const c = await composition();
  const first = await c.instantiate("client");
  const second = await c.instantiate("client");
  assert.equal(first.imports.find((d) => d.name === "counter")?.pattern, "direct", "the lowered module says `direct`");
  assert.equal(bump(first, 1, 3), 3n);
  assert.equal(bump(second, 1, 2), 2n, "the second importer has its own counter");
  assert.equal(readTotal(first), 3n);
  const exporters = first.exporters("counter");
  assert.equal(exporters.length, 1);
  assert.equal(get(exporters[0]), 3n, "the host sees the exporter the importer used");
});

await check("singleton", async () => {
  const c = await composition();
  c.setPattern("counter", "singleton");
  const first = await c.instantiate("client");
  const second = await c.instantiate("client");
  assert.equal(bump(first, 1, 3), 3n);
  assert.equal(bump(second, 1, 2), 5n, "the state persists from one importer to the other");
  assert.equal(readTotal(first), 5n);
  const singleton = await c.singleton("counter");
  assert.equal(incr(singleton, 10), 15n, "the host shares it too");
  assert.equal(readTotal(second), 15n);
  assert.equal(first.exporters("counter")[0], second.exporters("counter")[0]);
});

await check("fanout", async () => {
  const c = await composition(["a", "b", "c"]);
  c.setPattern("counter", "fanout");
  const seen = [];
  const { results: incrResults } = counter.layout.fn("counter", "incr");
  const importer = await c.instantiate("client", {
    onFanout: (iface, fn, rs) => {
      assert.deepEqual([iface, fn], ["counter", "incr"]);
      seen.push(rs.map((r) => (r instanceof Uint8Array ? decodeFields(counter.layout, incrResults, r)[0] : r)));
    },
  });
  const consumers = importer.exporters("counter");
  assert.equal(consumers.length, 3);
  incr(consumers[0], 10);
  incr(consumers[1], 20);
  // One call reaches every exporter; the importer gets the first result.
  assert.equal(bump(importer, 1, 1), 11n);
  assert.deepEqual(consumers.map(get), [11n, 21n, 1n]);
  assert.deepEqual(seen, [[11n, 21n, 1n]], "results collected in registration order");

  // A consumer that failed is unusable and reported; the others still run.
  assert.throws(() => consumers[1].callBytes("counter", "incr", new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), /trapped/, "a malformed message traps");
  assert.ok(consumers[1].poisoned);
  assert.equal(bump(importer, 1, 1), 12n);
  const last = seen.at(-1);
  assert.equal(last[0], 12n);
  assert.match(String(last[1]?.message), /unusable after an earlier failure/);
  assert.equal(last[2], 2n);
});

await check("pool", async () => {
  const c = await composition();
  c.setPattern("counter", "pool", 2);
  const importer = await c.instantiate("client");
  assert.equal(bump(importer, 1, 4), 2n, "four increments over two members");
  // Four importers share the pool (one thread in JavaScript: in turn).
  for (let i = 0; i < 4; i++) bump(await c.instantiate("client"), 1, 25);
  const pool = c.pool("counter");
  assert.equal(pool.members.length, 2);
  const totals = pool.members.map(get);
  assert.equal(totals.reduce((a, b) => a + b, 0n), 104n, `every call ran exactly once: ${totals}`);
  assert.equal(pool.replaced, 0);
});

console.log(`link: ${results.length} patterns agree with runtime/tests/patterns.rs (${results.join(", ")})`);
