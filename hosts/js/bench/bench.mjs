// One run of the JavaScript host's benchmark (run.sh prepares DIR): the call
// overhead of `add(2, 40)` (basics fixture) and TemperatureBatch `analyze`
// over 10,000 readings (benches/guests, the paper's Figure 32), through
// hosts/js (the lowered module, Karmem ABI) and through jco's transpiled
// component, in one node process. Prints a Markdown table of medians and
// ratios to jco. Usage: node bench.mjs DIR.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { load, Builder } from "karmem-host";

const dir = process.argv[2];
const basicsTs = await import(join(dir, "js/gen/basics.js"));
const tempTs = await import(join(dir, "js/gen/temperature.js"));
const jcoBasics = await import(join(dir, "jco-basics/basics.p2.js"));
const jcoTemp = await import(join(dir, "jco-temperature/temperature-component.js"));

const basics = await load(readFileSync(join(dir, "basics.wasm")), { layout: basicsTs.layout, imports: { host: { log() {} } } });
const temperature = await load(readFileSync(join(dir, "temperature.wasm")), { layout: tempTs.layout });

/** Median nanoseconds per call of `f` over `samples` batches of `batch` calls. */
function measure(f, batch, samples = 21) {
  for (let i = 0; i < batch * 3; i++) f();
  const times = [];
  for (let s = 0; s < samples; s++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) f();
    times.push(Number(process.hrtime.bigint() - start) / batch);
  }
  times.sort((a, b) => a - b);
  return times[samples >> 1];
}

const N = 10_000;
const readings = Array.from({ length: N }, (_, i) => ({ timestamp: 1_700_000_000n + BigInt(i) * 60n, value: 15 + ((i * 7919) % 2000) / 100 }));
const timestamps = BigInt64Array.from(readings, (r) => r.timestamp);
const values = Float32Array.from(readings, (r) => r.value);

// Everyone must compute the same thing.
const expected = jcoTemp.temperature.analyze(readings);
const check = (got, what) => {
  const same = (a, b) => Math.abs(a - b) <= 1e-3 * Math.max(1, Math.abs(b));
  if (!same(got.average, expected.average) || got.max !== expected.max || got.min !== expected.min) {
    throw new Error(`${what}: ${JSON.stringify(got)} != ${JSON.stringify(expected)}`);
  }
};
if (basics.call("basics", "add", [2, 40]) !== 42 || basicsTs.callBasicsAdd(basics, 2, 40) !== 42 || jcoBasics.basics.add(2, 40) !== 42) {
  throw new Error("add(2, 40) is not 42 everywhere");
}

// The typed path: the argument message built top-down with the generated
// builder, columns filled from typed arrays, in a reused buffer; the result
// read through its generated view.
const b = new Builder(256 * 1024);
function typedAnalyze() {
  b.reset();
  const args = tempTs.TemperatureAnalyzeParamsBuilder.newRoot(b);
  const cols = args.allocReadings(N);
  cols.timestampArray().set(timestamps);
  cols.valueArray().set(values);
  const view = tempTs.TemperatureAnalyzeResultsView.root(temperature.callBytes("temperature", "analyze", b.finish())).ret;
  return { average: view.average, max: view.max, min: view.min };
}
const dynamicAnalyze = () => {
  const r = temperature.call("temperature", "analyze", [readings]);
  return { average: r.average, max: r.max, min: r.min };
};
check(typedAnalyze(), "typed");
check(dynamicAnalyze(), "dynamic");

const rows = [
  ["add(2, 40)", "jco", measure(() => jcoBasics.basics.add(2, 40), 20_000)],
  ["add(2, 40)", "hosts/js, gen ts (`callBasicsAdd`)", measure(() => basicsTs.callBasicsAdd(basics, 2, 40), 20_000)],
  ["add(2, 40)", "hosts/js, dynamic (`guest.call`)", measure(() => basics.call("basics", "add", [2, 40]), 20_000)],
  ["analyze, 10,000 readings", "jco", measure(() => jcoTemp.temperature.analyze(readings), 20, 15)],
  ["analyze, 10,000 readings", "hosts/js, gen ts builder + view", measure(typedAnalyze, 20, 15)],
  ["analyze, 10,000 readings", "hosts/js, dynamic (`guest.call`)", measure(dynamicAnalyze, 5, 9)],
];
const jco = Object.fromEntries(rows.filter((r) => r[1] === "jco").map((r) => [r[0], r[2]]));
const fmt = (ns) => (ns >= 10_000 ? `${(ns / 1000).toFixed(1)} µs` : `${ns.toFixed(0)} ns`);
console.log(`node ${process.version}, ${new Date().toISOString()}`);
console.log("| call | path | median per call | ÷ jco |\n|---|---|---:|---:|");
for (const [call, path, ns] of rows) console.log(`| ${call} | ${path} | ${fmt(ns)} | ${(ns / jco[call]).toFixed(2)}× |`);
