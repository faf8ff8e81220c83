// The worker side of worker.js: one Guest per worker, driven by messages
// {id, op, ...} answered with {id, ok} or {id, error}.

import { parentPort } from "node:worker_threads";
import { load } from "./host.js";
import { createWasi } from "./wasi.js";

let guest = null;

const ops = {
  async load({ source, options }) {
    const { args, env, importsModule, ...rest } = options;
    const imports = importsModule ? (await import(importsModule)).imports : undefined;
    const wasi = createWasi({ args, env, stdout: (b) => process.stdout.write(b), stderr: (b) => process.stderr.write(b) });
    guest = await load(source, { ...rest, imports, wasi });
    return guest.exports.map((d) => ({ name: d.name, functions: d.functions.map((f) => f.name) }));
  },
  call: ({ iface, name, args }) => guest.call(iface, name, args),
  callBytes: ({ iface, name, message }) => guest.callBytes(iface, name, message),
  run: () => guest.run(),
};

parentPort.on("message", async ({ id, op, ...message }) => {
  try {
    parentPort.postMessage({ id, ok: await ops[op](message) });
  } catch (e) {
    parentPort.postMessage({ id, error: { name: e?.name ?? "Error", message: String(e?.message ?? e), code: e?.code, cause: e?.cause?.message } });
  }
});
