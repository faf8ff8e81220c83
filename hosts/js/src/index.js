// karmem-host: run modules lowered by `karmem-bridge lower` from JavaScript
// (docs/HOSTS.md). No runtime dependencies.
export { load, instantiate, Guest, Trap, Exit } from "./host.js";
export { Layout, KarmemError, encode, decode, encodeFields, decodeFields, toJson, zeroValue, columnHash, fromFloatJson } from "./codec.js";
export { List, Msg, Builder, zeroMessage, notACase } from "./typed.js";
export { createWasi, WasiExit } from "./wasi.js";
export { Composition } from "./link.js";
