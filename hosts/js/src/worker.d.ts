// Types of karmem-host/worker (docs/HOSTS.md, "Timeouts"). Node only.
import type { Exit, KarmemError, LayoutJson, Layout, Trap, Value } from "./index.js";

/** A call (or the load) ran past its deadline; the worker was terminated. */
export class Timeout extends Error {
  readonly ms: number;
}

export interface WorkerLoadOptions {
  layout?: string | LayoutJson | Layout;
  maxMemoryBytes?: number;
  args?: string[];
  env?: Record<string, string>;
  /** URL or path of an ES module whose `imports` export serves the guest's imports. */
  importsModule?: string;
  /** The default deadline of every call, and of the load. */
  timeoutMs?: number;
}

export class WorkerGuest {
  static load(source: BufferSource | WebAssembly.Module, options?: WorkerLoadOptions): Promise<WorkerGuest>;
  readonly exports: Array<{ name: string; functions: string[] }>;
  /** Why the guest is gone (a Timeout, a terminated worker), or null. */
  readonly dead: Timeout | KarmemError | null;
  call(iface: string, name: string, args?: Value[], options?: { timeoutMs?: number }): Promise<any>;
  callBytes(iface: string, name: string, message: Uint8Array, options?: { timeoutMs?: number }): Promise<Uint8Array>;
  run(options?: { timeoutMs?: number }): Promise<number>;
  terminate(): Promise<void>;
}

export function runInWorker(
  source: BufferSource | WebAssembly.Module,
  iface: string,
  name: string,
  args?: Value[],
  options?: WorkerLoadOptions,
): Promise<any>;

export type { Exit, Trap };
