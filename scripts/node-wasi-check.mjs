// Runs a lowered core module as a preview1 command on node (V8 + node:wasi).
//
// Usage:
//   node --no-warnings scripts/node-wasi-check.mjs [options] MODULE.wasm [ARG...]
// Options:
//   --dir HOST::GUEST     preopen the host directory HOST as GUEST (repeatable)
//   --env KEY=VALUE       set an environment variable (repeatable; none by default)
//   --expect-stdout FILE  compare the guest's stdout with FILE
//   --expect-exit CODE    compare the guest's exit code with CODE
//   --driver FILE.mjs     a reactor: instead of `_start`, call `drive(exports, note)`
//                         exported by FILE.mjs after `_initialize`; `note(line)`
//                         appends a line to the transcript
//   --transcript FILE     where `note` writes (required with --driver)
// ARG... are the guest's arguments, argv[0] included.
//
// The guest's stdout and stderr are this process's; its stdin is empty.
// Without expectations the process exits with the guest's exit code; with
// them it prints `ok` or what differed to stderr and exits 0 or 1.
// A trap prints `trap: <message>` to stderr and exits 134.
// (`--no-warnings` keeps node's "WASI is experimental" line off stderr.)

import { readFile } from "node:fs/promises";
import { openSync, closeSync, readFileSync, writeSync, fstatSync, appendFileSync, writeFileSync } from "node:fs";
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

// With an expectation, capture stdout in a file to compare it afterwards.
const capturing = expectStdout !== null;
const capturePath = join(tmpdir(), `node-wasi-check-${process.pid}.out`);
const stdoutFd = capturing ? openSync(capturePath, "w+") : 1;
const stdinFd = openSync("/dev/null", "r");

const wasi = new WASI({
  version: "preview1",
  args,
  env,
  preopens,
  stdin: stdinFd,
  stdout: stdoutFd,
  stderr: 2,
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

if (!capturing && expectExit === null) {
  process.exit(exitCode);
}
const failures = [];
if (capturing) {
  const size = fstatSync(stdoutFd).size;
  closeSync(stdoutFd);
  const actual = readFileSync(capturePath).subarray(0, size);
  if (!actual.equals(expectStdout)) {
    failures.push(`stdout differs:\n--- expected\n${expectStdout}\n--- actual\n${actual}`);
  }
}
if (expectExit !== null && exitCode !== expectExit) {
  failures.push(`exit code ${exitCode}, expected ${expectExit}`);
}
writeSync(2, failures.length === 0 ? "ok\n" : `${failures.join("\n")}\n`);
process.exit(failures.length === 0 ? 0 : 1);
