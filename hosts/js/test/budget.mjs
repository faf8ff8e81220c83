// A short message may claim a huge SoA array whose columns it leaves out
// (they read as zero values, FORMAT.md §9): the dynamic codec refuses to
// materialise more elements than the message's size allows instead of
// building billions of values.
//
// Usage: node hosts/js/test/budget.mjs KIT_DIR (uses the kit's basics layout)

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Layout, KarmemError } from "../src/index.js";
import { encode, decode } from "../src/codec.js";

const kit = process.argv[2];
if (!kit) throw new Error("usage: node test/budget.mjs KIT_DIR");
const layout = new Layout(readFileSync(join(kit, "basics.layout.json"), "utf8"));
const params = layout.fn("basics", "centroid").params;
const points = layout.get(params).fields.find((f) => f.name === "points");
assert.ok(points, "basics.centroid has no `points` parameter");

const bytes = encode(layout, params, { points: [{ x: 1, y: 2, label: "a" }, { x: 3, y: 4, label: "b" }] });
assert.equal(decode(layout, params, bytes).points.length, 2);
const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
const slot = view.getUint32(4, true) + points.offset;
const directory = view.getUint32(slot, true);
// length and capacity 2^31 - 1, and a SoA directory without columns
view.setUint32(slot + 4, 0x7fffffff, true);
view.setUint32(slot + 8, 0x7fffffff, true);
view.setUint32(directory, 0, true);
assert.throws(() => decode(layout, params, bytes), (e) => e instanceof KarmemError && /decode budget/.test(e.message));
// the same shape with a believable length decodes to zero values
view.setUint32(slot + 4, 3, true);
view.setUint32(slot + 8, 3, true);
assert.equal(decode(layout, params, bytes).points.length, 3);
console.log("budget: a huge array of absent columns is refused, a small one decodes");
