// A minimal WASI preview1 for hosts without `node:wasi` (browsers, workers):
// arguments, environment variables, stdout/stderr to callbacks, clocks,
// random bytes and `proc_exit`. No files: every path and descriptor other
// than 0, 1 and 2 is EBADF, other calls ENOSYS. Bring your own preview1
// (any object with `wasiImport` and `initialize(instance)`) for more.

const ESUCCESS = 0, EBADF = 8, EINVAL = 28, ENOSYS = 52;

/** What `proc_exit` throws; the host turns it into an Exit. */
export class WasiExit {
  constructor(code) {
    this.karmemExit = code;
  }
}

/**
 * options: args (string[]), env ({K: V}), stdout / stderr ((bytes: Uint8Array) => void),
 * now (() => bigint nanoseconds, wall clock), random ((bytes: Uint8Array) => void).
 */
export function createWasi(options = {}) {
  const encoder = new TextEncoder();
  const args = (options.args ?? []).map((a) => encoder.encode(a + "\0"));
  const env = Object.entries(options.env ?? {}).map(([k, v]) => encoder.encode(`${k}=${v}\0`));
  const out = { 1: options.stdout ?? (() => {}), 2: options.stderr ?? (() => {}) };
  const wall = options.now ?? (() => BigInt(Date.now()) * 1_000_000n);
  const start = typeof performance !== "undefined" ? performance.now() : Date.now();
  const monotonic = () => BigInt(Math.round(((typeof performance !== "undefined" ? performance.now() : Date.now()) - start) * 1e6));
  const random = options.random ?? ((bytes) => globalThis.crypto.getRandomValues(bytes));
  let memory = null;
  const view = () => new DataView(memory.buffer);
  const bytes = () => new Uint8Array(memory.buffer);

  const list = (items) => ({
    sizes(countPtr, sizePtr) {
      view().setUint32(countPtr, items.length, true);
      view().setUint32(sizePtr, items.reduce((n, b) => n + b.length, 0), true);
      return ESUCCESS;
    },
    get(ptrs, buf) {
      let at = buf;
      items.forEach((item, i) => {
        view().setUint32(ptrs + 4 * i, at, true);
        bytes().set(item, at);
        at += item.length;
      });
      return ESUCCESS;
    },
  });
  const argList = list(args), envList = list(env);

  const wasiImport = {
    args_sizes_get: (c, s) => argList.sizes(c, s),
    args_get: (p, b) => argList.get(p, b),
    environ_sizes_get: (c, s) => envList.sizes(c, s),
    environ_get: (p, b) => envList.get(p, b),
    clock_res_get: (_id, resPtr) => {
      view().setBigUint64(resPtr, 1000n, true);
      return ESUCCESS;
    },
    clock_time_get: (id, _precision, timePtr) => {
      if (id !== 0 && id !== 1) return EINVAL;
      view().setBigUint64(timePtr, id === 0 ? wall() : monotonic(), true);
      return ESUCCESS;
    },
    random_get: (ptr, len) => {
      // getRandomValues takes at most 65536 bytes at a time
      for (let at = 0; at < len; at += 65536) random(new Uint8Array(memory.buffer, ptr + at, Math.min(65536, len - at)));
      return ESUCCESS;
    },
    fd_write: (fd, iovs, iovsLen, nwrittenPtr) => {
      const sink = out[fd];
      if (!sink) return EBADF;
      let written = 0;
      for (let i = 0; i < iovsLen; i++) {
        const ptr = view().getUint32(iovs + 8 * i, true);
        const len = view().getUint32(iovs + 8 * i + 4, true);
        sink(bytes().slice(ptr, ptr + len));
        written += len;
      }
      view().setUint32(nwrittenPtr, written, true);
      return ESUCCESS;
    },
    fd_read: (fd, _iovs, _n, nreadPtr) => {
      if (fd !== 0) return EBADF;
      view().setUint32(nreadPtr, 0, true);
      return ESUCCESS;
    },
    fd_fdstat_get: (fd, statPtr) => {
      if (fd > 2) return EBADF;
      const v = view();
      v.setUint8(statPtr, 2); // character device
      v.setUint16(statPtr + 2, 0, true);
      v.setBigUint64(statPtr + 8, 0n, true);
      v.setBigUint64(statPtr + 16, 0n, true);
      return ESUCCESS;
    },
    fd_prestat_get: () => EBADF,
    fd_prestat_dir_name: () => EBADF,
    fd_close: (fd) => (fd <= 2 ? ESUCCESS : EBADF),
    proc_exit: (code) => {
      throw new WasiExit(code);
    },
    sched_yield: () => ESUCCESS,
  };
  const unsupported = new Proxy(wasiImport, {
    get(target, name) {
      if (name in target) return target[name];
      return () => ENOSYS;
    },
  });
  return {
    wasiImport: unsupported,
    initialize(instance) {
      memory = instance.exports.memory;
      if (typeof instance.exports._initialize === "function") instance.exports._initialize();
    },
    start(instance) {
      memory = instance.exports.memory;
      try {
        instance.exports._start();
        return 0;
      } catch (e) {
        if (e instanceof WasiExit) return e.karmemExit;
        throw e;
      }
    },
  };
}
