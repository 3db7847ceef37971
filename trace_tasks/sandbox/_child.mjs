// The Node child runner: exec'd by _child.py once the process is confined (rlimits, the slot's
// uid, no_new_privs, Landlock, seccomp: they hold across execve), as
// `node ... /proc/self/fd/R FD BUNDLE`. It speaks the same protocol as _child.py over the
// socket FD (a frame is a kind byte, a big-endian u32 length and JSON) and calls the bundle's
// `export async function handle(ctx)`. Node's standard library only.
import fs from "node:fs";
import { pathToFileURL } from "node:url";

const FD = Number(process.argv[2]);
const BUNDLE = process.argv[3];
const run = JSON.parse(process.env.TRACE_RUN);
delete process.env.TRACE_RUN;

function writeAll(buffer) {
  let offset = 0;
  while (offset < buffer.length) offset += fs.writeSync(FD, buffer, offset);
}

function send(message, kind = "m") {
  const data = Buffer.from(JSON.stringify(message));
  const header = Buffer.alloc(5);
  header.write(kind, 0, "latin1");
  header.writeUInt32BE(data.length, 1);
  writeAll(Buffer.concat([header, data]));
}

function readExact(n) {
  const buffer = Buffer.alloc(n);
  let offset = 0;
  while (offset < n) {
    const got = fs.readSync(FD, buffer, offset, n - offset, null);
    if (got === 0) process.exit(70); // the supervisor is gone
    offset += got;
  }
  return buffer;
}

function recv() {
  const size = readExact(5).readUInt32BE(1);
  return JSON.parse(readExact(size).toString());
}

class QueryRefused extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "QueryRefused";
    this.code = code;
  }
}

const messageBytes = run.limits.message_bytes;
const ctx = Object.freeze({
  params: run.params,
  range: run.range,
  QueryRefused,
  async query(sql) {
    if (typeof sql !== "string") throw new TypeError("ctx.query(sql): sql must be a string");
    if (Buffer.byteLength(sql) > messageBytes - 64) {
      throw new RangeError(`ctx.query(sql): the SQL is over ${messageBytes - 64} bytes`);
    }
    send({ type: "query", sql });
    const reply = recv();
    if (!reply.ok) throw new QueryRefused(reply.code ?? "refused", reply.message ?? "");
    return reply.result;
  },
  log(message) {
    send({ type: "log", message: String(message).slice(0, 4096) });
  },
  heartbeat() {
    send({ type: "heartbeat" });
  },
});
for (const name of ["log", "info", "warn", "error", "debug"]) {
  console[name] = (...parts) => ctx.log(parts.map(String).join(" "));
}

function entryFile(module) {
  for (const suffix of [".mjs", ".js"]) {
    const file = `${BUNDLE}/${module}${suffix}`;
    if (fs.existsSync(file)) return file;
  }
  throw new Error(`the bundle has no ${module}.mjs or ${module}.js`);
}

function shortStack(error) {
  const lines = String(error?.stack ?? "").split("\n").slice(1);
  return lines
    .filter((line) => line.includes(BUNDLE))
    .slice(0, 8)
    .map((line) => line.replace(`file://${BUNDLE}/`, "").replace(`${BUNDLE}/`, ""))
    .join("\n");
}

function checkRows(rows) {
  if (!Array.isArray(rows)) {
    return ["malformed_output", `handle() must return an array of objects, not ${typeof rows}`];
  }
  for (const [i, row] of rows.entries()) {
    if (row === null || typeof row !== "object" || Array.isArray(row)) {
      return ["malformed_output", `row ${i} is not an object`];
    }
  }
  let data;
  try {
    data = JSON.stringify(rows, (key, value) => {
      if (typeof value === "number" && !Number.isFinite(value)) {
        throw new TypeError(`${value} is not JSON`);
      }
      return value;
    });
  } catch (error) {
    return ["malformed_output", `the rows are not JSON: ${error.message}`];
  }
  if (Buffer.byteLength(data) > run.limits.output_bytes) {
    return ["output_too_large", `the rows are over ${run.limits.output_bytes} bytes as JSON`];
  }
  return [null, data];
}

let rows;
try {
  const [module, fn = "handle"] = run.entrypoint.split(":");
  const loaded = await import(pathToFileURL(entryFile(module)).href);
  if (typeof loaded[fn] !== "function") throw new Error(`${module} exports no function ${fn}()`);
  rows = await loaded[fn](ctx);
} catch (error) {
  const message = `${error?.name ?? "Error"}: ${error?.message ?? String(error)}`;
  send({ type: "error", code: "exception", message, traceback: shortStack(error) });
  process.exit(1);
}
const [code, data] = checkRows(rows);
if (code) {
  send({ type: "error", code, message: data });
  process.exit(1);
}
const payload = Buffer.from(data);
const header = Buffer.alloc(5);
header.write("r", 0, "latin1");
header.writeUInt32BE(payload.length, 1);
writeAll(Buffer.concat([header, payload]));
process.exit(0);
