// Guests on a worker thread, so that a call can be given a deadline: V8
// cannot interrupt WebAssembly on the thread that runs it, but a thread can
// be terminated from outside. Node only (`node:worker_threads`); imported as
// `karmem-host/worker`, not from the package's main entry, so browsers never
// load it.
//
// Owns: `WorkerGuest` (a Guest of host.js living in a worker: load, call,
// callBytes, run, each with a timeout that terminates the worker) and
// `runInWorker` (one call, then the worker is gone). The guest's WASI is the
// minimal one of wasi.js (arguments, environment, stdout and stderr passed
// through; no files). Host imports cannot cross threads as functions:
// `importsModule` names an ES module whose `imports` export serves them,
// loaded inside the worker.

import { Worker } from "node:worker_threads";
import { KarmemError } from "./codec.js";
import { Trap, Exit } from "./host.js";

/** A call (or the load) ran past its deadline; the worker was terminated. */
export class Timeout extends Error {
  constructor(ms, what) {
    super(`${what} did not finish within ${ms} ms: the guest's worker was terminated`);
    this.name = "Timeout";
    this.ms = ms;
  }
}

/** An error from the worker as the class the host throws in-thread. */
function revive(e) {
  if (e.name === "Exit") return new Exit(e.code);
  if (e.name === "Trap") return new Trap(new Error(e.cause ?? e.message));
  const out = new KarmemError(e.message);
  out.name = e.name;
  return out;
}

export class WorkerGuest {
  constructor(worker, timeoutMs) {
    this.worker = worker;
    this.timeoutMs = timeoutMs;
    this.pending = new Map();
    this.next = 1;
    this.dead = null;
    const fail = (error) => {
      this.dead ??= error;
      for (const { reject, timer } of this.pending.values()) {
        clearTimeout(timer);
        reject(this.dead);
      }
      this.pending.clear();
    };
    worker.on("message", ({ id, ok, error }) => {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      clearTimeout(p.timer);
      if (error) p.reject(revive(error));
      else p.resolve(ok);
    });
    worker.on("error", (e) => fail(new KarmemError(`the guest's worker failed: ${e.message}`)));
    worker.on("exit", (code) => fail(new KarmemError(`the guest's worker is gone (exit ${code})`)));
  }

  /**
   * Loads `source` (bytes or a WebAssembly.Module) in a new worker. options:
   * layout, maxMemoryBytes (as `load`), args and env (WASI), importsModule
   * (URL or path of a module exporting `imports`), timeoutMs (the default
   * deadline of every call and of the load).
   */
  static async load(source, options = {}) {
    const worker = new Worker(new URL("./worker-main.js", import.meta.url));
    const guest = new WorkerGuest(worker, options.timeoutMs);
    const { timeoutMs: _, ...rest } = options;
    const layout = rest.layout && typeof rest.layout === "object" ? { types: rest.layout.types, named: rest.layout.named, functions: rest.layout.functions } : rest.layout;
    try {
      guest.exports = await guest._request({ op: "load", source, options: { ...rest, layout } }, options.timeoutMs, "loading the guest");
    } catch (e) {
      await guest.terminate();
      throw e;
    }
    return guest;
  }

  _request(message, timeoutMs, what) {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      let timer;
      if (timeoutMs !== undefined && timeoutMs !== null) {
        timer = setTimeout(() => {
          this.pending.delete(id);
          this.dead = new Timeout(timeoutMs, what);
          reject(this.dead);
          this.worker.terminate();
        }, timeoutMs);
      }
      this.pending.set(id, { resolve, reject, timer });
      this.worker.postMessage({ id, ...message });
    });
  }

  /** `Guest.call` in the worker; rejects with Timeout past `timeoutMs` (and the guest is gone). */
  call(iface, name, args = [], { timeoutMs = this.timeoutMs } = {}) {
    return this._request({ op: "call", iface, name, args }, timeoutMs, `\`${iface}.${name}\``);
  }

  /** `Guest.callBytes` in the worker. */
  callBytes(iface, name, message, { timeoutMs = this.timeoutMs } = {}) {
    return this._request({ op: "callBytes", iface, name, message }, timeoutMs, `\`${iface}.${name}\``);
  }

  /** `Guest.run` (a command's `_start`) in the worker; its exit code. */
  run({ timeoutMs = this.timeoutMs } = {}) {
    return this._request({ op: "run" }, timeoutMs, "`_start`");
  }

  /** Ends the worker (and the guest). */
  async terminate() {
    this.dead ??= new KarmemError("the guest's worker was terminated");
    await this.worker.terminate();
  }
}

/** Loads `source` in a worker, makes one call with a deadline, and ends the worker. */
export async function runInWorker(source, iface, name, args = [], options = {}) {
  const guest = await WorkerGuest.load(source, options);
  try {
    return await guest.call(iface, name, args);
  } finally {
    await guest.terminate();
  }
}
