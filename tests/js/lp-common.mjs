// Helpers of the LongPoll scenarios (longpoll.mjs, longpoll-app.mjs): checks, waits with a
// deadline, phoenix.js sockets over LongPoll or WebSocket, presence views, child clients and
// an HTTP proxy that refuses WebSocket upgrades and can stall requests.
import http from "node:http";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Socket, LongPoll, Presence } from "phoenix";
import WebSocket from "ws";

/** The default deadline of a wait. */
export const DEADLINE_MS = 5000;

/** Child processes to kill when a scenario fails. */
const children = new Set();

export function fail(message) {
  console.error(`FAIL ${message}`);
  for (const child of children) child.kill("SIGKILL");
  process.exit(1);
}

export function check(condition, message) {
  if (!condition) fail(message);
}

export const json = (value) => JSON.stringify(value);

/** `value` with the keys of its objects sorted, so that key order does not matter. */
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical);
  if (value === null || typeof value !== "object" || value instanceof ArrayBuffer) return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical(value[key])]));
}

export function deepEqual(a, b) {
  return json(canonical(a)) === json(canonical(b));
}

/** Resolves when `register(resolve)` calls back, or fails after the deadline. */
export function waitFor(what, register, deadlineMs = DEADLINE_MS) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`timed out waiting for ${what}`), deadlineMs);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** Polls `condition` every 10 ms until it holds, or fails with `describe()` at the deadline. */
export async function until(what, condition, describe = () => "", deadlineMs = DEADLINE_MS) {
  const deadline = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > deadline) fail(`${what} within ${deadlineMs} ms: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The reply to a push: {status, response}. */
export function receive(push, what) {
  return waitFor(what, (done) => {
    push
      .receive("ok", (response) => done({ status: "ok", response }))
      .receive("error", (response) => done({ status: "error", response }))
      .receive("timeout", () => fail(`${what}: push timed out`));
  });
}

/** Joins `channel`; fails unless the join succeeds. Resolves with the join reply. */
export async function join(channel, what) {
  const joined = await receive(channel.join(), what);
  check(joined.status === "ok", `${what}: ${json(joined)}`);
  return joined.response;
}

/**
 * A connected phoenix.js socket on `url` (ws://…/socket). `opts.transport` defaults to
 * LongPoll; errors are logged unless `opts.expectErrors`.
 */
export function socket(url, opts = {}) {
  const s = new Socket(url, {
    transport: LongPoll,
    rejoinAfterMs: () => 50,
    reconnectAfterMs: () => 50,
    ...opts,
  });
  s.errors = [];
  s.onError((e) => {
    s.errors.push(e?.message ?? e);
    if (opts.expectErrors !== true) console.error("socket error", e?.message ?? e);
  });
  s.connect();
  return s;
}

/** A phoenix.js socket over WebSocket (the `ws` package). */
export function wsSocket(url, opts = {}) {
  return socket(url, { transport: WebSocket, ...opts });
}

/** Resolves once `s` is open over LongPoll. */
export async function openOverLongPoll(s, what) {
  await until(`${what} open`, () => s.isConnected(), () => s.connectionState());
  check(s.conn instanceof LongPoll, `${what} is on ${s.conn?.constructor?.name}, not LongPoll`);
}

/** A Presence on `channel` and its view: the sorted keys, or what `render` makes of each. */
export function presence(channel, render = (id) => id) {
  const p = new Presence(channel);
  return () => p.list(render).sort();
}

/** Waits until every view shows `expected`. */
export async function converge(views, expected, step, deadlineMs = DEADLINE_MS) {
  for (const [name, view] of Object.entries(views)) {
    await until(`${step}: ${name} sees ${json(expected)}`, () => deepEqual(view(), expected), () => json(view()), deadlineMs);
  }
}

/**
 * Starts `node longpoll.mjs child ARGS…`: a LongPoll client in a process of its own, killed
 * if this process fails. Resolves with the child once it printed `joined`.
 */
export async function spawnChild(args) {
  const script = fileURLToPath(new URL("./longpoll.mjs", import.meta.url));
  const child = spawn(process.execPath, [script, "child", ...args], { stdio: ["pipe", "pipe", "inherit"] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  let out = "";
  await waitFor("the child client to join", (done) => {
    child.stdout.on("data", (chunk) => {
      out += chunk;
      if (out.includes("joined\n")) done();
    });
    child.on("exit", (code) => fail(`the child client exited (${code}): ${out}`));
  });
  child.removeAllListeners("exit");
  child.on("exit", () => children.delete(child));
  return child;
}

/** Kills `child` (SIGKILL: its connections just die) and waits for its exit. */
export async function killChild(child) {
  const exited = waitFor("the child client to die", (done) => child.on("exit", done));
  child.kill("SIGKILL");
  await exited;
}

/**
 * An HTTP proxy in front of `target` (http://host:port), as a corporate proxy would be: it
 * forwards plain requests and refuses WebSocket upgrades with 403. `hold()` makes it keep new
 * requests (a stalled network) until `release()`. Counts what it saw.
 */
export async function startProxy(target) {
  const upstream = new URL(target);
  const proxy = { upgradesRefused: 0, forwarded: 0, longpolls: 0, holding: false, held: [] };
  const forward = (req, res) => {
    proxy.forwarded += 1;
    if (req.url.includes("/longpoll")) proxy.longpolls += 1;
    const out = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    out.on("error", () => res.destroy());
    req.pipe(out);
  };
  const server = http.createServer((req, res) => {
    if (proxy.holding) proxy.held.push(() => forward(req, res));
    else forward(req, res);
  });
  server.on("upgrade", (_req, sock) => {
    proxy.upgradesRefused += 1;
    sock.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `ws://127.0.0.1:${server.address().port}${upstream.pathname}`;
  proxy.hold = () => {
    proxy.holding = true;
  };
  proxy.release = () => {
    proxy.holding = false;
    for (const go of proxy.held.splice(0)) go();
  };
  proxy.close = () => {
    server.close();
    server.closeAllConnections();
  };
  return proxy;
}

/** A `sessionStorage` stand-in (Node has none): phoenix.js remembers its fallback in it. */
export function memoryStorage() {
  const items = new Map();
  return {
    items,
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => items.set(key, String(value)),
    removeItem: (key) => items.delete(key),
  };
}
