// The wasi-reactor fixture's script for node (`node-wasi-check.mjs --driver`):
// the same calls and transcript lines as `core_probe` in
// `adapters/tests/wasi_fixtures.rs`, with the canonical ABI by hand.

const PROBE = "karmem:fixtures/wasi-probe#";
const WRITTEN = "written by the reactor";

export function drive(exports, note) {
  const memory = () => new DataView(exports.memory.buffer);
  const call = (name, ...args) => exports[name](...args);
  const probe = (name, ...args) => call(PROBE + name, ...args);
  const post = (name, ret) => call(`cabi_post_${PROBE}${name}`, ret);
  const quoted = (text) => `"${text}"`;
  const string = (text) => {
    const bytes = new TextEncoder().encode(text);
    const ptr = call("cabi_realloc", 0, 0, 1, bytes.length);
    new Uint8Array(exports.memory.buffer, ptr, bytes.length).set(bytes);
    return [ptr, bytes.length];
  };
  const u32 = (ptr) => memory().getUint32(ptr, true);
  const u8 = (ptr) => memory().getUint8(ptr);
  const loadString = (at) =>
    new TextDecoder().decode(new Uint8Array(exports.memory.buffer, u32(at), u32(at + 4)));

  probe("print", ...string("hello from the reactor"));
  note("print -> ()");
  probe("warn", ...string("a warning"));
  note("warn -> ()");
  for (const name of ["GREETING", "MISSING"]) {
    const ret = probe("env-var", ...string(name));
    const value = u8(ret) === 1 ? `some(${quoted(loadString(ret + 4))})` : "none";
    post("env-var", ret);
    note(`env-var(${quoted(name)}) -> ${value}`);
  }
  {
    const ret = probe("args");
    const list = u32(ret);
    const args = [];
    for (let index = 0; index < u32(ret + 4); index++) args.push(quoted(loadString(list + 8 * index)));
    post("args", ret);
    note(`args -> [${args.join(", ")}]`);
  }
  for (const name of ["wall-clock-plausible", "monotonic-ordered"]) {
    note(`${name} -> ${probe(name) !== 0}`);
  }
  {
    const ret = probe("random-draws", 32);
    note(`random-draws(32) -> (${u32(ret)}, ${u8(ret + 4) !== 0})`);
  }
  {
    const ret = probe("write-file", ...string("/sandbox/out.txt"), ...string(WRITTEN));
    const written = u8(ret) === 0 ? "ok" : `err(${quoted(loadString(ret + 4))})`;
    post("write-file", ret);
    note(`write-file("/sandbox/out.txt") -> ${written}`);
  }
  for (const name of ["/sandbox/out.txt", "/sandbox/missing.txt"]) {
    const ret = probe("read-file", ...string(name));
    const tag = u8(ret) === 0 ? "ok" : "err";
    const text = loadString(ret + 4);
    post("read-file", ret);
    note(`read-file(${quoted(name)}) -> ${tag}(${quoted(text)})`);
  }
  note("exit-with(3)");
  probe("exit-with", 3);
}
