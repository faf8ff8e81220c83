// Types of karmem-host (docs/HOSTS.md).

/** A value in docs/HOSTS.md's JSON form (decoded 64-bit integers are bigint). */
export type Value = null | boolean | number | bigint | string | Value[] | { [key: string]: Value };

export interface LayoutJson {
  types: Array<{ k: string; size: number; align: number; [key: string]: unknown }>;
  named: Record<string, number>;
  functions: Record<string, { params: number; results: number }>;
}

export class Layout {
  constructor(json: string | LayoutJson);
  readonly types: LayoutJson["types"];
  get(id: number): LayoutJson["types"][number];
  fn(iface: string, name: string): { params: number; results: number };
  type(name: string): number;
}

export class KarmemError extends Error {}
export class Trap extends Error {}
export class Exit extends Error {
  readonly code: number;
}

export function encode(layout: Layout, ty: number, value: Value): Uint8Array;
export function decode(layout: Layout, ty: number, bytes: Uint8Array): Value;
export function encodeFields(layout: Layout, ty: number, values: Value[]): Uint8Array;
export function decodeFields(layout: Layout, ty: number, bytes: Uint8Array): Value[];
export function toJson(value: Value): Value;
export function zeroValue(layout: Layout, ty: number): Value;
export function columnHash(path: number[]): number;
export function fromFloatJson(value: number | string): number;

export interface Descriptor {
  package: string;
  name: string;
  pattern: "direct" | "fanout" | "singleton" | "pool" | string;
  functions: Array<{ name: string; id: number; typeHash: bigint }>;
  memories: Array<{ name: string; access: number; offset: number; pages: number }>;
  witPackage: string;
  witInterface: string;
  witVersion: string;
}

export interface WasiLike {
  wasiImport: Record<string, unknown>;
  initialize?(instance: { exports: Record<string, unknown> }): void;
  start?(instance: { exports: Record<string, unknown> }): number | undefined;
}

export type HostFunction = (...args: any[]) => any;

export interface LoadOptions {
  layout?: string | LayoutJson | Layout;
  imports?: Record<string, Record<string, HostFunction>>;
  wasi?: WasiLike;
  maxMemoryBytes?: number;
  rawImports?: Record<string, Record<string, (this: Guest, ...args: any[]) => any>>;
}

export class Guest {
  readonly imports: Descriptor[];
  readonly exports: Descriptor[];
  readonly layout: Layout | null;
  readonly memory: WebAssembly.Memory;
  readonly memoryBytes: number;
  describe(iface: string, name: string): { interface: string; function: string; id: number };
  call(iface: string, name: string, args?: Value[]): any;
  callBytes(iface: string, name: string, message: Uint8Array): Uint8Array;
  callId(id: number, message: Uint8Array): Uint8Array;
  drop(resource: string, handle: number, iface?: string): void;
  run(): number;
  /** The trap that made the guest unusable, or null. */
  readonly poisoned: Trap | null;
  /** On an importer instantiated by a Composition: the guests serving import `iface`. */
  exporters?: (iface: string) => Guest[];
}

export function load(source: BufferSource | WebAssembly.Module, options?: LoadOptions): Promise<Guest>;
export function instantiate(module: WebAssembly.Module, options?: LoadOptions): Promise<Guest>;

export interface WasiOptions {
  args?: string[];
  env?: Record<string, string>;
  stdout?: (bytes: Uint8Array) => void;
  stderr?: (bytes: Uint8Array) => void;
  now?: () => bigint;
  random?: (bytes: Uint8Array) => void;
}
export function createWasi(options?: WasiOptions): WasiLike;
export class WasiExit {
  readonly karmemExit: number;
}

export class Composition {
  add(name: string, source: BufferSource | WebAssembly.Module, options?: LoadOptions): Promise<Composition>;
  setPattern(iface: string, pattern: "direct" | "fanout" | "singleton" | "pool", instances?: number): void;
  instantiate(
    name: string,
    options?: LoadOptions & { onFanout?: (iface: string, fn: string, results: Array<Uint8Array | Error>) => void },
  ): Promise<Guest>;
  singleton(iface: string): Promise<Guest>;
  /** The pool serving `iface` (pattern "pool"). */
  pool(iface: string): { members: Guest[]; replaced: number; next: number };
}

// ---- typed.js: what `karmem-bridge gen ts` output reads and writes with

/** A lazy read-only array: element `i` is read when asked for. */
export class List<T> implements Iterable<T> {
  constructor(length: number, at: (i: number) => T);
  readonly length: number;
  get(i: number): T;
  toArray(): T[];
  map<U>(f: (value: T, i: number) => U): U[];
  [Symbol.iterator](): Iterator<T>;
}

type TypedArrayCtor<A> = { new (length: number): A; new (buffer: ArrayBufferLike, byteOffset: number, length: number): A; readonly BYTES_PER_ELEMENT: number };

/** A message to read (bounds-checked loads at offsets generated code computes). */
export class Msg {
  constructor(bytes: Uint8Array);
  readonly bytes: Uint8Array;
  readonly dv: DataView;
  root(): number;
  u8(at: number): number;
  i8(at: number): number;
  u16(at: number): number;
  i16(at: number): number;
  u32(at: number): number;
  i32(at: number): number;
  u64(at: number): bigint;
  i64(at: number): bigint;
  f32(at: number): number;
  f64(at: number): number;
  bool(at: number): boolean;
  char(at: number): string;
  uint(at: number, width: number): number;
  range(at: number, len: number): void;
  bad(what: string, at: number): KarmemError;
  body(at: number): number;
  object(off: number, size: number): number;
  slot(at: number): [number, number];
  block(offset: number, length: number, size: number): number;
  str(at: number): string;
  str16(at: number): string;
  flags(at: number, size: number, names: readonly string[]): string[];
  list<T>(at: number, size: number, read: (m: Msg, at: number) => T): List<T>;
  fixed<T>(at: number, len: number, size: number, read: (m: Msg, at: number) => T): List<T>;
  columns(dir: number, length: number, hashes: readonly number[], sizes: readonly number[]): number[];
  column<T>(col: number, length: number, size: number, read: (m: Msg, at: number) => T, absent: () => T): List<T>;
  typed<A>(col: number, length: number, ctor: TypedArrayCtor<A>, absent: number | bigint): A;
  unionSoa<T>(at: number, tagWidth: number, payloadSize: number, hashes: readonly number[], read: (m: Msg, tag: number, payloadAt: number) => T): List<T>;
  bunch<T>(at: number, entry: (tag: number, offset: number, length: number) => List<T> | null): List<T>;
}

/** A message of zeros after its header: types read there read as their zero values. */
export function zeroMessage(size: number): Msg;

/** The top-down message writer. */
export class Builder {
  constructor(capacity?: number);
  readonly bytes: Uint8Array;
  readonly dv: DataView;
  readonly len: number;
  reset(): this;
  alloc(size: number, align: number): number;
  object(size: number): number;
  block(size: number): number;
  body(used: number): number;
  setRoot(offset: number): void;
  u8(at: number, v: number): void;
  i8(at: number, v: number): void;
  u16(at: number, v: number): void;
  i16(at: number, v: number): void;
  u32(at: number, v: number): void;
  i32(at: number, v: number): void;
  u64(at: number, v: bigint): void;
  i64(at: number, v: bigint): void;
  f32(at: number, v: number): void;
  f64(at: number, v: number): void;
  bool(at: number, v: boolean): void;
  char(at: number, v: string): void;
  uint(at: number, width: number, v: number): void;
  flags(at: number, names: readonly string[], v: readonly string[]): void;
  slot(at: number, offset: number, length: number, capacity: number): void;
  str(at: number, s: string): void;
  str16(at: number, s: string): void;
  list<T>(at: number, items: readonly T[], size: number, write: (b: Builder, at: number, v: T) => void): void;
  allocList(at: number, length: number, size: number): number;
  fixed<T>(at: number, items: readonly T[], len: number, size: number, write: (b: Builder, at: number, v: T) => void): void;
  soa(at: number, length: number, hashes: readonly number[], sizes: readonly number[]): number[];
  finish(): Uint8Array;
}

export function notACase(value: unknown, union: string): KarmemError;
