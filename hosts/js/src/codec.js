// The schema-driven Karmem codec (docs/FORMAT.md) for JavaScript values.
//
// Owns: encoding a JavaScript value of a KarmemIDL type into a message and
// decoding a message back, driven by a layout as JSON (`karmem-bridge gen ts`
// embeds one as `layout`; the host kit writes `NAME.layout.json`): sizes,
// offsets, SoA columns and union tags all come from there, so nothing here
// lays a schema out. Values are docs/HOSTS.md's "Values as JSON", except that
// decoded 64-bit integers are BigInts and floats plain numbers (NaN,
// Infinity); `toJson` turns a decoded value into the JSON form.
//
// Every read goes through a DataView over the message, so a reference past
// its end throws a RangeError; values are checked as FORMAT.md §9 asks
// (bool 0/1, chars, enum values, union tags, discriminants, UTF-8/UTF-16,
// dynamic struct headers, array length <= capacity, depth). Overlap of
// objects is not checked (a reader does not need it to stay in bounds).

const HEADER_WORD = 0x0c;
const MAX_DEPTH = 64;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf16 = new TextDecoder("utf-16le", { fatal: true });
const utf8Encoder = new TextEncoder();

/** A malformed message or a value that does not fit its type. */
export class KarmemError extends Error {
  constructor(message) {
    super(message);
    this.name = "KarmemError";
  }
}

const alignUp = (x, a) => Math.ceil(x / a) * a;

/** FNV-1a 32-bit over each path position as 4 LE bytes (FORMAT.md §6.3). */
export function columnHash(path) {
  let h = 0x811c9dc5;
  for (const p of path) {
    for (let i = 0; i < 4; i++) {
      h ^= (p >>> (8 * i)) & 0xff;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h >>> 0;
}

/** A layout (JSON text or parsed) with lookups. */
export class Layout {
  constructor(json) {
    const parsed = typeof json === "string" ? JSON.parse(json) : json;
    if (!parsed || !Array.isArray(parsed.types)) throw new KarmemError("a layout needs `types`");
    this.types = parsed.types;
    this.named = parsed.named ?? {};
    this.functions = parsed.functions ?? {};
  }
  get(id) {
    const t = this.types[id];
    if (!t) throw new KarmemError(`no type ${id} in the layout`);
    return t;
  }
  /** The argument and result struct ids of `interface.function`. */
  fn(iface, name) {
    const f = this.functions[`${iface}.${name}`];
    if (!f) throw new KarmemError(`the layout has no function \`${iface}.${name}\``);
    return f;
  }
  /** The named item `name`'s type id. */
  type(name) {
    const id = this.named[name];
    if (id === undefined) throw new KarmemError(`the layout has no item \`${name}\``);
    return id;
  }
}

// ---------------------------------------------------------------- decoding

/** Decodes `bytes` (a message; empty is the empty message) as type `ty`. */
export function decode(layout, ty, bytes) {
  if (bytes.length === 0) bytes = new Uint8Array([HEADER_WORD, 0, 0, 0, 0, 0, 0, 0]);
  const r = new Reader(layout, bytes);
  if (bytes.length < 8 || r.u32(0) !== HEADER_WORD) throw new KarmemError("not a Karmem message (bad header word)");
  return r.outOfLine(ty, r.u32(4), 0);
}

/** Decodes a function message into its fields in order (an array). */
export function decodeFields(layout, ty, bytes) {
  const record = decode(layout, ty, bytes);
  return layout.get(ty).fields.map((f) => record[f.name]);
}

// Array lengths come from the message, and elements of zero size (empty
// structs, SoA columns a message leaves out, payload-less union cases) take
// no bytes: a short hostile message could ask for billions of values. A
// decode materialises at most DECODE_BUDGET_BASE elements plus
// DECODE_BUDGET_PER_BYTE per message byte (FORMAT.md §9's `max_visit` idea).
const DECODE_BUDGET_BASE = 2 ** 24, DECODE_BUDGET_PER_BYTE = 8;

class Reader {
  constructor(layout, bytes) {
    this.layout = layout;
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.budget = DECODE_BUDGET_BASE + DECODE_BUDGET_PER_BYTE * bytes.length;
  }
  charge(n, at) {
    if (n > this.budget) {
      throw new KarmemError(`array at ${at}: the message asks for more values than its size allows (${n - this.budget} elements over the decode budget)`);
    }
    this.budget -= n;
  }
  u8(at) { return this.view.getUint8(at); }
  u16(at) { return this.view.getUint16(at, true); }
  u32(at) { return this.view.getUint32(at, true); }
  uint(at, width) {
    switch (width) {
      case 1: return this.u8(at);
      case 2: return this.u16(at);
      case 4: return this.u32(at);
      case 8: return Number(this.view.getBigUint64(at, true));
      default: throw new KarmemError(`bad width ${width}`);
    }
  }
  range(at, len) {
    if (at + len > this.bytes.length) throw new KarmemError(`object at ${at} (${len} bytes) past the end of the message`);
    return this.bytes.subarray(at, at + len);
  }
  outOfLine(ty, at, depth) {
    const t = this.layout.get(ty);
    if (t.k === "struct" && t.dynamic) return this.body(t, at, depth + 1);
    if (t.size === 0) return this.inline(ty, 0, depth);
    if (at === 0) throw new KarmemError(`offset 0 for a value of ${t.size} bytes`);
    return this.inline(ty, at, depth + 1);
  }
  body(s, at, depth) {
    if (depth > MAX_DEPTH) throw new KarmemError("message nested too deeply");
    if (at % 8 !== 0) throw new KarmemError(`dynamic struct body at ${at} is not 8-aligned`);
    const header = this.u32(at);
    const units = header >>> 3;
    const used = units * 8 - (header & 7);
    if (units === 0 || used < 4) throw new KarmemError(`bad dynamic struct header at ${at}`);
    this.range(at, units * 8);
    const out = s.tuple ? [] : {};
    s.fields.forEach((f, i) => {
      const size = this.layout.get(f.ty).size;
      const v = f.offset + size <= used ? this.inline(f.ty, at + f.offset, depth) : absent(this.layout, f);
      if (s.tuple) out.push(v); else out[f.name] = v;
    });
    return out;
  }
  slot(at) {
    const offset = this.u32(at), length = this.u32(at + 4), capacity = this.u32(at + 8);
    if (length > capacity) throw new KarmemError(`array at ${at}: length ${length} > capacity ${capacity}`);
    return { offset, length, capacity };
  }
  inline(ty, at, depth) {
    if (depth > MAX_DEPTH) throw new KarmemError("message nested too deeply");
    const t = this.layout.get(ty);
    const v = this.view;
    switch (t.k) {
      case "prim":
        switch (t.p) {
          case "u8": return v.getUint8(at);
          case "i8": return v.getInt8(at);
          case "u16": return v.getUint16(at, true);
          case "i16": return v.getInt16(at, true);
          case "u32": return v.getUint32(at, true);
          case "i32": return v.getInt32(at, true);
          case "u64": return v.getBigUint64(at, true);
          case "i64": return v.getBigInt64(at, true);
          case "f32": return v.getFloat32(at, true);
          case "f64": return v.getFloat64(at, true);
          case "bool": {
            const b = v.getUint8(at);
            if (b > 1) throw new KarmemError(`bool ${b} at ${at}`);
            return b === 1;
          }
          case "char": {
            const c = v.getUint32(at, true);
            if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) throw new KarmemError(`char ${c} at ${at}`);
            return String.fromCodePoint(c);
          }
        }
        throw new KarmemError(`unknown primitive ${t.p}`);
      case "handle": return v.getUint32(at, true);
      case "enum": {
        const value = this.uint(at, t.width);
        const c = t.cases.find((x) => x[1] === value);
        if (!c) throw new KarmemError(`${value} is not a value of enum ${t.name}`);
        return c[0];
      }
      case "flags": {
        const out = [];
        const n = t.flags.length;
        for (let byte = 0; byte < t.size; byte++) {
          const bits = v.getUint8(at + byte);
          for (let bit = 0; bit < 8; bit++) {
            if (bits & (1 << bit)) {
              const i = byte * 8 + bit;
              if (i >= n) throw new KarmemError(`flag bit ${i} of ${t.name} is not declared`);
              out.push(t.flags[i]);
            }
          }
        }
        return out;
      }
      case "struct": {
        if (t.dynamic) return this.body(t, v.getUint32(at, true), depth + 1);
        if (t.tuple) return t.fields.map((f) => this.inline(f.ty, at + f.offset, depth));
        const out = {};
        for (const f of t.fields) out[f.name] = this.inline(f.ty, at + f.offset, depth);
        return out;
      }
      case "union": {
        const tag = this.uint(at, t.tag_width);
        return this.unionValue(t, tag, at + t.payload_offset, depth);
      }
      case "string": {
        const { offset, length } = this.slot(at);
        if (length === 0) return "";
        if (t.utf16) {
          if (offset % 2 !== 0) throw new KarmemError(`UTF-16 string at ${offset} is not aligned`);
          return decodeText(utf16, this.range(offset, length * 2), offset);
        }
        return decodeText(utf8, this.range(offset, length), offset);
      }
      case "fixed": {
        const size = this.layout.get(t.elem).size;
        const out = new Array(t.len);
        for (let i = 0; i < t.len; i++) out[i] = this.inline(t.elem, at + i * size, depth);
        return out;
      }
      case "array": return this.array(t, this.slot(at), depth + 1);
      case "option": {
        const d = v.getUint8(at);
        if (d === 0) return null;
        if (d !== 1) throw new KarmemError(`option discriminant ${d} at ${at}`);
        return { some: this.inline(t.some, at + t.payload_offset, depth) };
      }
      case "result": {
        const d = v.getUint8(at);
        if (d > 1) throw new KarmemError(`result discriminant ${d} at ${at}`);
        const side = d === 0 ? t.ok : t.err;
        const payload = side === null ? null : this.inline(side, at + t.payload_offset, depth);
        return d === 0 ? { ok: payload } : { err: payload };
      }
    }
    throw new KarmemError(`unknown type kind ${t.k}`);
  }
  /** A union case's value given its tag and where its payload (or payload offset) is. */
  unionValue(u, tag, payloadAt, depth) {
    const c = u.cases.find((x) => x.tag === tag);
    if (!c) throw new KarmemError(`${tag} is not a tag of union ${u.name}`);
    if (c.ty === null) return { [c.name]: null };
    if (u.dynamic) return { [c.name]: this.outOfLine(c.ty, this.u32(payloadAt), depth) };
    return { [c.name]: this.inline(c.ty, payloadAt, depth) };
  }
  array(t, slot, depth) {
    const { offset, length } = slot;
    if (length === 0) return [];
    this.charge(length, offset);
    if (offset === 0 && t.form !== "bovoa" && t.form !== "bovos") {
      // only arrays of 0-byte elements need no storage
      if (this.layout.get(t.elem).size !== 0) throw new KarmemError("a non-empty array without storage");
    }
    if (offset % 64 !== 0) throw new KarmemError(`array block at ${offset} is not 64-aligned`);
    if (t.map) {
      // entries are read as the entry struct `{key, value}`
      return this.soa(t.elem, offset, length, depth).map((e) => [e.key, e.value]);
    }
    switch (t.form) {
      case "plain": return this.plain(t.elem, offset, length, depth);
      case "soa": return this.soa(t.elem, offset, length, depth);
      default: return this.bunch(t, offset, length, depth);
    }
  }
  plain(elem, offset, length, depth) {
    const size = this.layout.get(elem).size;
    this.range(offset, length * size);
    const out = new Array(length);
    for (let i = 0; i < length; i++) out[i] = this.inline(elem, offset + i * size, depth);
    return out;
  }
  /** The directory's columns by hash. */
  directory(offset) {
    const n = this.u32(offset);
    if (n > 1024) throw new KarmemError(`SoA directory at ${offset} has ${n} columns`);
    const byHash = new Map();
    for (let j = 0; j < n; j++) byHash.set(this.u32(offset + 4 + 4 * j), this.u32(offset + 4 + 4 * n + 4 * j));
    return byHash;
  }
  soa(elem, offset, length, depth) {
    const t = this.layout.get(elem);
    const byHash = this.directory(offset);
    if (t.k === "union") {
      const [tagCol, payloadCol] = t.columns.map((c) => byHash.get(c.hash));
      if (tagCol === undefined || payloadCol === undefined) throw new KarmemError(`union SoA array without its columns`);
      this.range(tagCol, length * t.tag_width);
      const out = new Array(length);
      for (let i = 0; i < length; i++) {
        out[i] = this.unionValue(t, this.uint(tagCol + i * t.tag_width, t.tag_width), payloadCol + i * t.payload_size, depth);
      }
      return out;
    }
    const cols = t.columns.map((c) => {
      const at = byHash.get(c.hash);
      if (at !== undefined && c.size > 0) this.range(at, length * c.size);
      return at;
    });
    const out = new Array(length);
    for (let i = 0; i < length; i++) {
      out[i] = this.soaRow(elem, t, cols, i, depth);
    }
    return out;
  }
  /** Element `i` of an SoA array of struct `t`, assembled from its leaves. */
  soaRow(elem, t, cols, i, depth) {
    const root = t.tuple ? [] : {};
    t.columns.forEach((c, j) => {
      const at = cols[j];
      let value;
      if (at === undefined) {
        value = missingLeaf(this.layout, elem, c.path);
      } else {
        value = this.inline(c.leaf, at + i * c.size, depth);
      }
      setPath(this.layout, elem, root, c.path, value);
    });
    // inline structs with no leaves (empty) still need their slot
    fillEmpty(this.layout, t, root);
    return root;
  }
  bunch(t, offset, length, depth) {
    const u = this.layout.get(t.elem);
    const m = this.u32(offset);
    if (m > 1024) throw new KarmemError(`bunch table at ${offset} has ${m} entries`);
    const out = [];
    let total = 0, lastTag = -1;
    for (let j = 0; j < m; j++) {
      const entry = offset + 8 + 16 * j;
      const tag = this.u32(entry);
      if (tag <= lastTag) throw new KarmemError("bunch tags not increasing");
      lastTag = tag;
      const c = u.cases.find((x) => x.tag === tag);
      if (!c) throw new KarmemError(`${tag} is not a tag of union ${u.name}`);
      const s = this.slot(entry + 4);
      if (s.capacity !== s.length) throw new KarmemError("bunch entry with capacity != length");
      total += s.length;
      if (c.ty === null) {
        for (let i = 0; i < s.length; i++) out.push({ [c.name]: null });
        continue;
      }
      const isStruct = this.layout.get(c.ty).k === "struct";
      const values = s.length === 0 ? [] : t.form === "bovos" && isStruct ? this.soa(c.ty, s.offset, s.length, depth) : this.plain(c.ty, s.offset, s.length, depth);
      for (const value of values) out.push({ [c.name]: value });
    }
    if (total !== length) throw new KarmemError("bunch entry lengths do not sum to the array length");
    return out;
  }
}

function decodeText(decoder, bytes, at) {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new KarmemError(`invalid text at ${at}`);
  }
}

/** The struct field's value when a dynamic struct leaves it out. */
function absent(layout, field) {
  if (field.default !== null && field.default !== undefined) return literalValue(layout, field.ty, field.default);
  return zeroValue(layout, field.ty);
}

/** A default literal of the layout JSON as a value of type `ty`. */
function literalValue(layout, ty, lit) {
  const t = layout.get(ty);
  if (t.k === "prim") {
    switch (t.p) {
      case "u64": case "i64": return BigInt(lit);
      case "f32": return Math.fround(typeof lit === "number" ? lit : fromFloatJson(lit));
      case "f64": return typeof lit === "number" ? lit : fromFloatJson(lit);
      case "bool": return lit;
      case "char": return lit;
      default: return Number(lit);
    }
  }
  if (t.k === "union") return { [lit]: null };
  if (t.k === "flags") return [lit];
  return lit;
}

/** What the all-zero bytes of type `ty` decode to (FORMAT.md §7). */
export function zeroValue(layout, ty) {
  const t = layout.get(ty);
  switch (t.k) {
    case "prim":
      switch (t.p) {
        case "u64": case "i64": return 0n;
        case "bool": return false;
        case "char": return "\0";
        default: return 0;
      }
    case "handle": return 0;
    case "enum": {
      const c = t.cases.find((x) => x[1] === 0);
      if (!c) throw new KarmemError(`enum ${t.name} has no zero value (NoDefault)`);
      return c[0];
    }
    case "flags": return [];
    case "struct": {
      if (t.tuple) return t.fields.map((f) => (t.dynamic ? absent(layout, f) : zeroValue(layout, f.ty)));
      const out = {};
      for (const f of t.fields) out[f.name] = t.dynamic ? absent(layout, f) : zeroValue(layout, f.ty);
      return out;
    }
    case "union": {
      const c = t.cases.find((x) => x.tag === 0);
      if (!c) throw new KarmemError(`union ${t.name} has no zero value (NoDefault)`);
      return { [c.name]: c.ty === null ? null : zeroValue(layout, c.ty) };
    }
    case "string": return "";
    case "array": return [];
    case "fixed": return Array.from({ length: t.len }, () => zeroValue(layout, t.elem));
    case "option": return null;
    case "result": return { ok: t.ok === null ? null : zeroValue(layout, t.ok) };
  }
  throw new KarmemError(`unknown type kind ${t.k}`);
}

/** An SoA leaf whose column the message does not have: its field's default or zero. */
function missingLeaf(layout, elem, path) {
  let t = layout.get(elem);
  let field = null;
  for (const p of path) {
    field = t.fields[p];
    t = layout.get(field.ty);
  }
  return path.length === 1 ? absent(layout, field) : zeroValue(layout, field.ty);
}

function setPath(layout, elem, root, path, value) {
  let t = layout.get(elem);
  let node = root;
  for (let d = 0; d < path.length; d++) {
    const f = t.fields[path[d]];
    const key = t.tuple ? path[d] : f.name;
    if (d === path.length - 1) {
      node[key] = value;
      return;
    }
    const inner = layout.get(f.ty);
    if (node[key] === undefined) node[key] = inner.tuple ? [] : {};
    node = node[key];
    t = inner;
  }
}

function fillEmpty(layout, t, node) {
  t.fields.forEach((f, i) => {
    const key = t.tuple ? i : f.name;
    const inner = layout.get(f.ty);
    if (node[key] === undefined) node[key] = zeroValue(layout, f.ty);
    else if (inner.k === "struct" && !inner.dynamic) fillEmpty(layout, inner, node[key]);
  });
}

// ---------------------------------------------------------------- encoding

/** A growable, zero-filled message buffer (FORMAT.md's top-down writer). */
/**
 * A message being written: the header, then objects allocated in order,
 * zero-filled, in a buffer that grows by doubling (offsets stay valid, views
 * over the old buffer do not). Shared by the dynamic codec's writer and the
 * typed `Builder` (typed.js).
 */
export class MessageBuffer {
  constructor(capacity = 256) {
    this.bytes = new Uint8Array(Math.max(alignUp(capacity, 64), 64));
    this.dv = new DataView(this.bytes.buffer);
    this.len = 8;
    this.dv.setUint32(0, HEADER_WORD, true);
  }
  reserve(end) {
    if (end > 0xffffffff) throw new KarmemError("message larger than 4 GiB");
    if (end <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < end) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.len));
    this.bytes = grown;
    this.dv = new DataView(grown.buffer);
  }
  /** `size` zeroed bytes aligned to `align`; 0 (no storage) when size is 0. */
  alloc(size, align) {
    if (size === 0) return 0;
    const start = alignUp(this.len, align);
    this.reserve(start + size);
    this.len = start + size;
    return start;
  }
}

class Writer extends MessageBuffer {
  block(size) { return this.alloc(alignUp(size, 64), 64); }
  slot(at, offset, length, capacity) {
    this.dv.setUint32(at, offset, true);
    this.dv.setUint32(at + 4, length, true);
    this.dv.setUint32(at + 8, capacity, true);
  }
  uint(at, width, value) {
    switch (width) {
      case 1: this.dv.setUint8(at, value); break;
      case 2: this.dv.setUint16(at, value, true); break;
      case 4: this.dv.setUint32(at, value, true); break;
      case 8: this.dv.setBigUint64(at, BigInt(value), true); break;
      default: throw new KarmemError(`bad width ${width}`);
    }
  }
  finish() { return this.bytes.subarray(0, this.len); }
}

/** Encodes `value` as a message whose root has type `ty`. */
export function encode(layout, ty, value) {
  const e = new Encoder(layout);
  const root = e.outOfLine(ty, value, "");
  e.w.dv.setUint32(4, root, true);
  return e.w.finish();
}

/** Encodes the argument (or result) struct `ty` from its fields in order. */
export function encodeFields(layout, ty, values) {
  const t = layout.get(ty);
  if (values.length !== t.fields.length) {
    throw new KarmemError(`${t.name || "the function"} takes ${t.fields.length} values, got ${values.length}`);
  }
  const record = {};
  t.fields.forEach((f, i) => (record[f.name] = values[i]));
  return encode(layout, ty, t.tuple ? values : record);
}

function toBigInt(v, where) {
  if (typeof v === "bigint") return v;
  if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
  if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v);
  throw new KarmemError(`${where}: expected a 64-bit integer, found ${JSON.stringify(String(v))}`);
}

/** A float of the JSON form: a number, or "nan" / "inf" / "-inf". */
export function fromFloatJson(v) {
  if (typeof v === "number") return v;
  if (v === "nan") return NaN;
  if (v === "inf") return Infinity;
  if (v === "-inf") return -Infinity;
  throw new KarmemError(`expected a float, found ${JSON.stringify(v)}`);
}

const INT_RANGES = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff],
};

/** The one key of a `{case: payload}` object, or a bare case name. */
function caseOf(value, where) {
  if (typeof value === "string") return [value, null];
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1) return [keys[0], value[keys[0]]];
  }
  throw new KarmemError(`${where}: expected {case: payload}, found ${short(value)}`);
}

function short(value) {
  let text;
  try {
    text = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v));
  } catch {
    text = String(value);
  }
  return text === undefined ? String(value) : text.length > 60 ? text.slice(0, 60) + "..." : text;
}

class Encoder {
  constructor(layout) {
    this.layout = layout;
    this.w = new Writer();
  }
  outOfLine(ty, value, where) {
    const t = this.layout.get(ty);
    if (t.k === "struct" && t.dynamic) return this.body(t, value, where);
    const at = this.w.alloc(t.size, 8);
    if (t.size === 0) {
      this.check(ty, value, where);
      return 0;
    }
    this.inline(ty, at, value, where);
    return at;
  }
  /** Checks a value of a 0-byte type by writing it to a scratch message. */
  check(ty, value, where) {
    const scratch = new Encoder(this.layout);
    scratch.inline(ty, scratch.w.alloc(8, 8), value, where);
  }
  body(s, value, where) {
    const used = Math.max(s.used, 4);
    const size = alignUp(used, 8);
    const at = this.w.alloc(size, 8);
    this.w.dv.setUint32(at, ((size / 8) << 3) | (size - used), true);
    this.fields(s, at, value, where);
    return at;
  }
  field(s, value, i, where) {
    const f = s.fields[i];
    if (Array.isArray(value)) return value[i];
    if (value && typeof value === "object") return value[f.name];
    throw new KarmemError(`${where}: expected a record for struct ${s.name}, found ${short(value)}`);
  }
  fields(s, at, value, where) {
    if (Array.isArray(value) && value.length !== s.fields.length) {
      throw new KarmemError(`${where}: ${s.name} has ${s.fields.length} fields, the value ${value.length}`);
    }
    s.fields.forEach((f, i) => {
      const v = this.field(s, value, i, where);
      if (v === undefined) throw new KarmemError(`${where}: missing field \`${f.name}\` of ${s.name}`);
      this.inline(f.ty, at + f.offset, v, `${where}.${f.name}`);
    });
  }
  inline(ty, at, value, where) {
    const t = this.layout.get(ty);
    const v = this.w.dv;
    switch (t.k) {
      case "prim":
        switch (t.p) {
          case "u64": v.setBigUint64(at, BigInt.asUintN(64, toBigInt(value, where)), true); return;
          case "i64": v.setBigInt64(at, BigInt.asIntN(64, toBigInt(value, where)), true); return;
          case "f32": v.setFloat32(at, fromFloatJson(value), true); return;
          case "f64": v.setFloat64(at, fromFloatJson(value), true); return;
          case "bool":
            if (typeof value !== "boolean") throw new KarmemError(`${where}: expected a bool, found ${short(value)}`);
            v.setUint8(at, value ? 1 : 0);
            return;
          case "char": {
            const c = typeof value === "string" ? value.codePointAt(0) : undefined;
            if (c === undefined || String.fromCodePoint(c) !== value) {
              throw new KarmemError(`${where}: expected one character, found ${short(value)}`);
            }
            v.setUint32(at, c, true);
            return;
          }
          default: {
            const [lo, hi] = INT_RANGES[t.p];
            const n = typeof value === "bigint" ? Number(value) : value;
            if (!Number.isInteger(n) || n < lo || n > hi) throw new KarmemError(`${where}: ${short(value)} is not a ${t.p}`);
            this.w.uint(at, t.size, t.p.startsWith("i") && n < 0 ? n + 2 ** (8 * t.size) : n);
            return;
          }
        }
      case "handle":
        if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new KarmemError(`${where}: ${short(value)} is not a handle`);
        v.setUint32(at, value, true);
        return;
      case "enum": {
        const c = t.cases.find((x) => x[0] === value);
        if (!c) throw new KarmemError(`${where}: ${short(value)} is not a case of enum ${t.name}`);
        this.w.uint(at, t.width, c[1]);
        return;
      }
      case "flags": {
        if (!Array.isArray(value)) throw new KarmemError(`${where}: expected a list of flags`);
        for (const name of value) {
          const i = t.flags.indexOf(name);
          if (i < 0) throw new KarmemError(`${where}: \`${name}\` is not a flag of ${t.name}`);
          v.setUint8(at + (i >> 3), v.getUint8(at + (i >> 3)) | (1 << (i & 7)));
        }
        return;
      }
      case "struct":
        if (t.dynamic) {
          const off = this.body(t, value, where);
          // allocating may have moved the buffer: write through the new view
          this.w.dv.setUint32(at, off, true);
          return;
        }
        this.fields(t, at, value, where);
        return;
      case "union": {
        const [name, payload] = caseOf(value, where);
        this.unionParts(t, at, at + t.payload_offset, name, payload, where);
        return;
      }
      case "string": {
        if (typeof value !== "string") throw new KarmemError(`${where}: expected a string, found ${short(value)}`);
        if (t.utf16) {
          if (typeof value.isWellFormed === "function" && !value.isWellFormed()) {
            throw new KarmemError(`${where}: the string has an unpaired surrogate`);
          }
          const n = value.length;
          const block = this.w.block(2 * n);
          this.w.slot(at, block, n, n);
          const view = this.w.dv;
          for (let i = 0; i < n; i++) view.setUint16(block + 2 * i, value.charCodeAt(i), true);
        } else {
          const bytes = utf8Encoder.encode(value);
          const block = this.w.block(bytes.length);
          this.w.slot(at, block, bytes.length, bytes.length);
          this.w.bytes.set(bytes, block);
        }
        return;
      }
      case "fixed": {
        if (!Array.isArray(value) || value.length !== t.len) throw new KarmemError(`${where}: expected ${t.len} elements`);
        const size = this.layout.get(t.elem).size;
        value.forEach((item, i) => this.inline(t.elem, at + i * size, item, `${where}[${i}]`));
        return;
      }
      case "array":
        this.array(t, at, value, where);
        return;
      case "option":
        if (value === null || value === undefined) {
          v.setUint8(at, 0);
        } else {
          if (typeof value !== "object" || !("some" in value)) throw new KarmemError(`${where}: expected null or {some: v}`);
          v.setUint8(at, 1);
          this.inline(t.some, at + t.payload_offset, value.some, `${where}.some`);
        }
        return;
      case "result": {
        const isOk = value && typeof value === "object" && "ok" in value;
        const isErr = value && typeof value === "object" && "err" in value;
        if (isOk === isErr) throw new KarmemError(`${where}: expected {ok: v} or {err: v}, found ${short(value)}`);
        this.w.dv.setUint8(at, isOk ? 0 : 1);
        const side = isOk ? t.ok : t.err;
        const payload = isOk ? value.ok : value.err;
        if (side === null) {
          if (payload !== null && payload !== undefined) throw new KarmemError(`${where}: this result case has no payload`);
        } else {
          this.inline(side, at + t.payload_offset, payload, `${where}.${isOk ? "ok" : "err"}`);
        }
        return;
      }
    }
    throw new KarmemError(`unknown type kind ${t.k}`);
  }
  unionParts(u, tagAt, payloadAt, name, payload, where) {
    const c = u.cases.find((x) => x.name === name);
    if (!c) throw new KarmemError(`${where}: \`${name}\` is not a case of union ${u.name}`);
    this.w.uint(tagAt, u.tag_width, c.tag);
    if (c.ty === null) {
      if (payload !== null && payload !== undefined) throw new KarmemError(`${where}: case \`${name}\` has no payload`);
      return;
    }
    if (payload === null || payload === undefined) {
      // a payload of a type whose value can be null (an option) is fine
      if (this.layout.get(c.ty).k !== "option") throw new KarmemError(`${where}: case \`${name}\` needs a payload`);
    }
    if (u.dynamic) {
      const off = this.outOfLine(c.ty, payload, `${where}#${name}`);
      this.w.dv.setUint32(payloadAt, off, true);
    } else {
      this.inline(c.ty, payloadAt, payload, `${where}#${name}`);
    }
  }
  array(t, at, items, where) {
    if (!Array.isArray(items)) throw new KarmemError(`${where}: expected a list, found ${short(items)}`);
    const n = items.length;
    if (t.map) {
      this.soa(t.elem, at, items.map((e) => {
        if (!Array.isArray(e) || e.length !== 2) throw new KarmemError(`${where}: a map entry must be [key, value]`);
        return e;
      }), where);
      return;
    }
    switch (t.form) {
      case "plain": {
        const size = this.layout.get(t.elem).size;
        const block = this.w.block(n * size);
        this.w.slot(at, block, n, n);
        items.forEach((item, i) => this.inline(t.elem, block + i * size, item, `${where}[${i}]`));
        return;
      }
      case "soa":
        this.soa(t.elem, at, items, where);
        return;
      default:
        this.bunch(t, at, items, where);
    }
  }
  soa(elem, at, items, where) {
    const t = this.layout.get(elem);
    const n = items.length;
    if (n === 0) {
      this.w.slot(at, 0, 0, 0);
      return;
    }
    const columns = t.columns;
    const dir = this.w.block(4 + 8 * columns.length);
    this.w.slot(at, dir, n, n);
    this.w.dv.setUint32(dir, columns.length, true);
    const offsets = columns.map((c, j) => {
      const col = this.w.block(n * c.size);
      this.w.dv.setUint32(dir + 4 + 4 * j, c.hash, true);
      this.w.dv.setUint32(dir + 4 + 4 * columns.length + 4 * j, col, true);
      return col;
    });
    items.forEach((item, i) => {
      const here = `${where}[${i}]`;
      if (t.k === "union") {
        const [name, payload] = caseOf(item, here);
        this.unionParts(t, offsets[0] + i * t.tag_width, offsets[1] + i * t.payload_size, name, payload, here);
        return;
      }
      columns.forEach((c, j) => {
        const leaf = leafValue(this.layout, elem, item, c.path, here);
        this.inline(c.leaf, offsets[j] + i * c.size, leaf, here);
      });
    });
  }
  bunch(t, at, items, where) {
    const u = this.layout.get(t.elem);
    const n = items.length;
    const groups = new Map();
    items.forEach((item, i) => {
      const [name, payload] = caseOf(item, `${where}[${i}]`);
      const c = u.cases.find((x) => x.name === name);
      if (!c) throw new KarmemError(`${where}[${i}]: \`${name}\` is not a case of union ${u.name}`);
      if (!groups.has(c.tag)) groups.set(c.tag, { c, values: [] });
      groups.get(c.tag).values.push(payload);
    });
    if (n === 0) {
      this.w.slot(at, 0, 0, 0);
      return;
    }
    const entries = [...groups.values()].sort((a, b) => a.c.tag - b.c.tag);
    const table = this.w.block(8 + 16 * entries.length);
    this.w.slot(at, table, n, n);
    this.w.dv.setUint32(table, entries.length, true);
    entries.forEach(({ c, values }, j) => {
      const entry = table + 8 + 16 * j;
      this.w.dv.setUint32(entry, c.tag, true);
      if (c.ty === null) {
        this.w.slot(entry + 4, 0, values.length, values.length);
        return;
      }
      const isStruct = this.layout.get(c.ty).k === "struct";
      const form = t.form === "bovos" && isStruct ? "soa" : "plain";
      this.array({ k: "array", elem: c.ty, form, map: false }, entry + 4, values, `${where}#${c.name}`);
    });
  }
}

function leafValue(layout, elem, item, path, where) {
  let t = layout.get(elem);
  let v = item;
  for (const p of path) {
    if (v === null || typeof v !== "object") throw new KarmemError(`${where}: expected a record for ${t.name}`);
    const f = t.fields[p];
    v = Array.isArray(v) ? v[p] : v[f.name];
    if (v === undefined) throw new KarmemError(`${where}: missing field \`${f.name}\``);
    t = layout.get(f.ty);
  }
  return v;
}

// ---------------------------------------------------------------- JSON form

/**
 * A decoded value in docs/HOSTS.md's JSON form: BigInts as decimal strings,
 * NaN and infinities as "nan", "inf", "-inf". Everything else is already so.
 */
export function toJson(value) {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "nan";
    if (value === Infinity) return "inf";
    if (value === -Infinity) return "-inf";
    return value;
  }
  if (Array.isArray(value)) return value.map(toJson);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJson(v);
    return out;
  }
  return value;
}
