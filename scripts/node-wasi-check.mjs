// Runs a lowered core module as a preview1 command on node (V8 + node:wasi).
//
// Usage:
//   node --no-warnings scripts/node-wasi-check.mjs [options] MODULE.wasm [ARG...]
// Options:
//   --dir HOST::GUEST     preopen the host directory HOST as GUEST (repeatable)
//   --env KEY=VALUE       set an environment variable (repeatable; none by default)
//   --expect-stdout FILE  compare the guest's stdout with FILE
//   --expect-stderr FILE  compare the guest's stderr with FILE
//   --expect-files DIR    compare what the (one) preopened directory holds
//                         afterwards with DIR: the same paths, the same bytes
//   --expect-exit CODE    compare the guest's exit code with CODE
//   --driver FILE.mjs     a reactor: instead of `_start`, call `drive(exports, note)`
//                         exported by FILE.mjs after `_initialize`; `note(line)`
//                         appends a line to the transcript
//   --transcript FILE     where `note` writes (required with --driver)
// ARG... are the guest's arguments, argv[0] included.
//
// The guest's stdout and stderr are this process's (captured instead when an
// expectation is given for them); its stdin is empty. Without expectations
// the process exits with the guest's exit code; with them it prints `ok` or
// what differed to stderr and exits 0 or 1.
//
// Example, a lowered wasip1 command checked against what the component
// printed on wasmtime's component runtime:
//   karmem-bridge lower --abi canonical command.p1-command.wasm -o cmd.wasm
//   node --no-warnings scripts/node-wasi-check.mjs --dir sandbox::/sandbox \
//     --expect-stdout expected.stdout --expect-stderr expected.stderr \
//     --expect-files expected-sandbox --expect-exit 0 cmd.wasm command arg
// A trap prints `trap: <message>` to stderr and exits 134.
// (`--no-warnings` keeps node's "WASI is experimental" line off stderr.)

import { readFile } from "node:fs/promises";
import {
  openSync, closeSync, readFileSync, writeSync, fstatSync, appendFileSync, writeFileSync, readdirSync, unlinkSync,
} from "node:fs";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { WASI } from "node:wasi";
import { tmpdir } from "node:os";
import { join } from "node:path";

function usage(message) {
  process.stderr.write(`node-wasi-check: ${message}\n`);
  process.exit(2);
}

const preopens = {};
const env = {};
let expectStdout = null;
let expectStderr = null;
let expectFiles = null;
let expectExit = null;
let driverPath = null;
let transcriptPath = null;
let rest = process.argv.slice(2);
while (rest.length > 0 && rest[0].startsWith("--")) {
  const [flag, value] = rest;
  if (value === undefined) usage(`\`${flag}\` needs a value`);
  rest = rest.slice(2);
  if (flag === "--dir") {
    const split = value.indexOf("::");
    if (split < 0) usage(`\`--dir ${value}\` must be HOST::GUEST`);
    preopens[value.slice(split + 2)] = value.slice(0, split);
  } else if (flag === "--env") {
    const split = value.indexOf("=");
    if (split < 0) usage(`\`--env ${value}\` must be KEY=VALUE`);
    env[value.slice(0, split)] = value.slice(split + 1);
  } else if (flag === "--expect-stdout") {
    expectStdout = readFileSync(value);
  } else if (flag === "--expect-stderr") {
    expectStderr = readFileSync(value);
  } else if (flag === "--expect-files") {
    expectFiles = value;
  } else if (flag === "--expect-exit") {
    expectExit = Number(value);
  } else if (flag === "--driver") {
    driverPath = value;
  } else if (flag === "--transcript") {
    transcriptPath = value;
  } else {
    usage(`unknown option \`${flag}\``);
  }
}
const [modulePath, ...args] = rest;
if (!modulePath) usage("no module given");
if (driverPath !== null && transcriptPath === null) usage("`--driver` needs `--transcript`");
if (expectFiles !== null && Object.keys(preopens).length !== 1) usage("`--expect-files` needs exactly one `--dir`");

// With an expectation, capture stdout (stderr) in a file to compare it afterwards.
const capture = (expected, suffix, fd) => {
  if (expected === null) return { fd, path: null };
  const path = join(tmpdir(), `node-wasi-check-${process.pid}.${suffix}`);
  return { fd: openSync(path, "w+"), path };
};
const stdoutCapture = capture(expectStdout, "out", 1);
const stderrCapture = capture(expectStderr, "err", 2);
const stdinFd = openSync("/dev/null", "r");

const wasi = new WASI({
  version: "preview1",
  args,
  env,
  preopens,
  stdin: stdinFd,
  stdout: stdoutCapture.fd,
  stderr: stderrCapture.fd,
  // A reactor's exports are called directly: `proc_exit` ends this process
  // with the guest's code (the transcript is already on disk by then).
  returnOnExit: driverPath === null,
});

let exitCode;
try {
  const module = await WebAssembly.compile(await readFile(modulePath));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  if (driverPath === null) {
    exitCode = wasi.start(instance);
  } else {
    writeFileSync(transcriptPath, "");
    const { drive } = await import(pathToFileURL(resolve(driverPath)).href);
    wasi.initialize(instance);
    drive(instance.exports, (line) => appendFileSync(transcriptPath, `${line}\n`));
    exitCode = 0;
  }
} catch (error) {
  process.stderr.write(`trap: ${error && error.message ? error.message : error}\n`);
  process.exit(134);
}
closeSync(stdinFd);

if (expectStdout === null && expectStderr === null && expectFiles === null && expectExit === null) {
  process.exit(exitCode);
}

// Every file under `root`, by relative path (directories end in `/`).
function tree(root, prefix = "", out = new Map()) {
  for (const entry of readdirSync(join(root, prefix), { withFileTypes: true })) {
    const relative = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) {
      out.set(`${relative}/`, Buffer.alloc(0));
      tree(root, relative, out);
    } else {
      out.set(relative, readFileSync(join(root, relative)));
    }
  }
  return out;
}

const failures = [];
const compareCaptured = (name, captured, expected) => {
  if (captured.path === null) return;
  const size = fstatSync(captured.fd).size;
  closeSync(captured.fd);
  const actual = readFileSync(captured.path).subarray(0, size);
  unlinkSync(captured.path);
  if (!actual.equals(expected)) {
    failures.push(`${name} differs:\n--- expected\n${expected}\n--- actual\n${actual}`);
  }
};
compareCaptured("stdout", stdoutCapture, expectStdout);
compareCaptured("stderr", stderrCapture, expectStderr);
if (expectFiles !== null) {
  const actual = tree(Object.values(preopens)[0]);
  const expected = tree(expectFiles);
  for (const [path, bytes] of expected) {
    if (!actual.has(path)) failures.push(`file \`${path}\` is missing`);
    else if (!actual.get(path).equals(bytes)) failures.push(`file \`${path}\` differs`);
  }
  for (const path of actual.keys()) {
    if (!expected.has(path)) failures.push(`file \`${path}\` is not expected`);
  }
}
if (expectExit !== null && exitCode !== expectExit) {
  failures.push(`exit code ${exitCode}, expected ${expectExit}`);
}
writeSync(2, failures.length === 0 ? "ok\n" : `${failures.join("\n")}\n`);
process.exit(failures.length === 0 ? 0 : 1);
