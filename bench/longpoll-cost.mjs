// What a LongPoll client costs the server against a WebSocket client (issue 13), measured on
// the echo example with the official phoenix.js (tests/js's install: `npm ci` in tests/js).
//
// For each transport, on a fresh `echo --longpoll` server: N clients (spread over worker
// processes) join one topic and sit idle; the server's RSS before and after gives bytes per
// idle joined session, and the idle window counts the clients' HTTP requests and the server's
// CPU. Then a WebSocket publisher pushes `message:new` (which the echo channel broadcasts to
// the topic) at a modest rate; every client must receive every broadcast, in order, once
// (exit 1 otherwise), and the server's CPU over the phase gives CPU per delivery.
//
//   cargo build --release -p fawkes-runtime --example echo
//   node bench/longpoll-cost.mjs --echo target/release/examples/echo
//
// Options (defaults): --clients 1000, --workers 2, --idle-secs 60, --rate 5 (broadcasts/s),
// --broadcast-secs 10, --transports longpoll,websocket (the order they run in).
// Every wait has a deadline; the script stops everything it started.
import { fork, spawn, execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const modules = new URL("../tests/js/node_modules/", import.meta.url);
if (!existsSync(new URL("phoenix/priv/static/phoenix.mjs", modules)) || !existsSync(new URL("ws/wrapper.mjs", modules))) {
  console.error("phoenix.js is not installed: run `npm ci` in tests/js first");
  process.exit(2);
}
const { Socket, LongPoll } = await import(new URL("phoenix/priv/static/phoenix.mjs", modules));
const { default: WebSocket } = await import(new URL("ws/wrapper.mjs", modules));

const TOPIC = "echo:cost";
const children = new Set();

function fail(message) {
  console.error(`FAIL ${message}`);
  for (const child of children) child.kill("SIGKILL");
  process.exit(1);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` (may be async) every `stepMs` until it holds, or fails at the deadline. */
async function until(what, condition, deadlineMs, stepMs = 100) {
  const deadline = Date.now() + deadlineMs;
  while (!(await condition())) {
    if (Date.now() > deadline) fail(`${what} within ${deadlineMs} ms`);
    await sleep(stepMs);
  }
}

/** A phoenix.js socket on `url` over `transport` ("longpoll" or "websocket"). */
function connect(url, transport, onError) {
  const socket = new Socket(url, { transport: transport === "longpoll" ? LongPoll : WebSocket });
  socket.onError(onError);
  socket.connect();
  return socket;
}

/** Joins `channel`; resolves once joined, fails on an error or a timeout. */
function join(channel, what) {
  return new Promise((resolve) => {
    channel
      .join()
      .receive("ok", resolve)
      .receive("error", (reply) => fail(`${what}: join refused ${JSON.stringify(reply)}`))
      .receive("timeout", () => fail(`${what}: join timed out`));
  });
}

// ---------------------------------------------------------------- worker: a share of the clients

async function worker() {
  const http = { GET: 0, POST: 0, other: 0 };
  const realFetch = globalThis.fetch;
  // phoenix.js' LongPoll reads `globalThis.fetch` at each request: count them here.
  globalThis.fetch = (input, options = {}) => {
    const method = options.method ?? "GET";
    http[method in http ? method : "other"] += 1;
    return realFetch(input, options);
  };
  const clients = [];
  let errors = 0;
  let received = 0;
  let duplicates = 0;
  let outOfOrder = 0;
  let latencies = [];
  let cpuMark = process.cpuUsage();

  const handlers = {
    async start({ url, transport, count }) {
      for (let first = 0; first < count; first += 50) {
        const batch = [];
        for (let i = first; i < Math.min(first + 50, count); i += 1) {
          const client = { next: 0, socket: connect(url, transport, () => (errors += 1)) };
          client.channel = client.socket.channel(TOPIC, {});
          client.channel.on("message:new", ({ seq, t }) => {
            latencies.push(Date.now() - t);
            if (seq < client.next) duplicates += 1;
            else {
              if (seq > client.next) outOfOrder += 1;
              received += 1;
              client.next = seq + 1;
            }
          });
          clients.push(client);
          batch.push(join(client.channel, `client ${i}`));
        }
        await Promise.all(batch);
      }
      errors = 0; // errors while connecting (none expected) do not count as later disruptions
      return { joined: clients.length };
    },
    mark() {
      const used = process.cpuUsage(cpuMark);
      cpuMark = process.cpuUsage();
      const counts = { http: { ...http }, errors, cpu: (used.user + used.system) / 1e6 };
      http.GET = http.POST = http.other = 0;
      errors = 0;
      return counts;
    },
    progress: () => ({ received, duplicates, outOfOrder }),
    latencies() {
      const out = latencies;
      latencies = [];
      return { latencies: out };
    },
    stop() {
      for (const { socket } of clients) socket.disconnect();
      return {};
    },
  };
  process.on("message", async ({ cmd, ...args }) => process.send({ reply: cmd, ...(await handlers[cmd](args)) }));
  process.on("disconnect", () => process.exit(0));
}

// ---------------------------------------------------------------- main: server, phases, report

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = process.argv[at + 1];
  if (value === undefined) fail(`--${name} takes a value`);
  return typeof fallback === "number" ? Number(value) : value;
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** The server's RSS in bytes and its CPU time (user + system) in seconds. */
function sample(pid) {
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { rss, cpu: (Number(fields[11]) + Number(fields[12])) / CLK_TCK };
}

/** Starts `echo 127.0.0.1:0 --longpoll` (otherwise its defaults); resolves with the process and its socket URL. */
async function startServer(echo) {
  const server = spawn(echo, ["127.0.0.1:0", "--longpoll"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.add(server);
  server.on("exit", (code) => server.expectExit || fail(`the echo server exited (${code})`));
  let out = "";
  server.stdout.on("data", (chunk) => (out += chunk));
  await until("the echo server to listen", () => /ws:\/\/(\S+)\/socket/.test(out), 10_000);
  return { server, url: `ws://${/ws:\/\/(\S+)\/socket/.exec(out)[1]}/socket` };
}

async function stopServer(server) {
  server.expectExit = true;
  server.kill("SIGINT");
  await until("the echo server to stop", () => server.exitCode !== null || server.signalCode !== null, 15_000);
  children.delete(server);
}

function startWorker() {
  const child = fork(fileURLToPath(import.meta.url), ["worker"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.add(child);
  child.on("exit", (code) => child.expectExit || fail(`a worker exited (${code})`));
  return child;
}

/** Sends `cmd` to every worker; resolves with their replies, or fails after `deadlineMs`. */
function ask(workers, cmd, args = {}, deadlineMs = 10_000) {
  return Promise.all(
    workers.map(
      (w, i) =>
        new Promise((resolve) => {
          const timer = setTimeout(() => fail(`worker ${i} did not answer ${cmd} within ${deadlineMs} ms`), deadlineMs);
          const listener = (message) => {
            if (message.reply !== cmd) return;
            clearTimeout(timer);
            w.off("message", listener);
            resolve(message);
          };
          w.on("message", listener);
          w.send({ cmd, ...(typeof args === "function" ? args(i) : args) });
        }),
    ),
  );
}

const sum = (replies, f) => replies.reduce((total, r) => total + f(r), 0);
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function phase(transport, o) {
  const { server, url } = await startServer(o.echo);
  const base = sample(server.pid);
  const workers = Array.from({ length: o.workers }, startWorker);
  const share = (i) => Math.floor(o.clients / o.workers) + (i < o.clients % o.workers ? 1 : 0);
  const joinStart = Date.now();
  const started = await ask(workers, "start", (i) => ({ url, transport, count: share(i) }), 120_000);
  const joinSecs = (Date.now() - joinStart) / 1000;
  if (sum(started, (r) => r.joined) !== o.clients) fail(`${transport}: not every client joined`);
  const joined = sample(server.pid);

  // Idle: nothing but polls (LongPoll) and heartbeats (every 30 s).
  await ask(workers, "mark");
  const idleStart = sample(server.pid);
  await sleep(o.idleSecs * 1000); // the measured window itself, not a wait for an event
  const idleMarks = await ask(workers, "mark");
  const idleEnd = sample(server.pid);

  // Broadcasts: the publisher (a WebSocket client) pushes `message:new`; the channel broadcasts it.
  const publisher = connect(url, "websocket", () => fail("the publisher's socket failed"));
  const channel = publisher.channel(TOPIC, {});
  await join(channel, "publisher");
  const broadcasts = Math.round(o.rate * o.broadcastSecs);
  const expected = o.clients * broadcasts;
  await ask(workers, "mark");
  const before = sample(server.pid);
  const pushStart = Date.now();
  const replies = [];
  for (let seq = 0; seq < broadcasts; seq += 1) {
    const due = pushStart + (seq * 1000) / o.rate;
    if (due > Date.now()) await sleep(due - Date.now()); // the publisher's pace
    replies.push(
      new Promise((resolve) =>
        channel
          .push("message:new", { seq, t: Date.now() })
          .receive("ok", resolve)
          .receive("error", (r) => fail(`broadcast ${seq} refused: ${JSON.stringify(r)}`))
          .receive("timeout", () => fail(`broadcast ${seq}: no reply`)),
      ),
    );
  }
  await Promise.all(replies);
  // Waits for the last deliveries (at most 30 s); what has not arrived by then is lost.
  let progress = await ask(workers, "progress");
  const drainDeadline = Date.now() + 30_000;
  while (sum(progress, (r) => r.received) < expected && Date.now() < drainDeadline) {
    await sleep(200);
    progress = await ask(workers, "progress");
  }
  const after = sample(server.pid);
  const deliverSecs = (Date.now() - pushStart) / 1000;
  const broadcastMarks = await ask(workers, "mark");
  const latencies = (await ask(workers, "latencies", {}, 30_000)).flatMap((r) => r.latencies).sort((a, b) => a - b);

  publisher.disconnect();
  await ask(workers, "stop");
  for (const w of workers) {
    w.expectExit = true;
    w.disconnect();
  }
  await stopServer(server);

  const received = sum(progress, (r) => r.received);
  const idleMinutes = o.idleSecs / 60;
  return {
    transport,
    joinSecs,
    bytesPerSessionJoined: (joined.rss - base.rss) / o.clients,
    bytesPerSessionIdle: (idleEnd.rss - base.rss) / o.clients,
    baseRss: base.rss,
    idleRss: idleEnd.rss,
    idleGetsPerMin: sum(idleMarks, (r) => r.http.GET) / o.clients / idleMinutes,
    idlePostsPerMin: sum(idleMarks, (r) => r.http.POST) / o.clients / idleMinutes,
    idleCpuUsPerSessionMin: ((idleEnd.cpu - idleStart.cpu) * 1e6) / o.clients / idleMinutes,
    disruptions: sum(idleMarks, (r) => r.errors) + sum(broadcastMarks, (r) => r.errors),
    broadcasts,
    expected,
    received,
    lost: expected - received,
    duplicates: sum(progress, (r) => r.duplicates),
    outOfOrder: sum(progress, (r) => r.outOfOrder),
    deliverSecs,
    cpuSecs: after.cpu - before.cpu,
    cpuUsPerDelivery: ((after.cpu - before.cpu) * 1e6) / Math.max(received, 1),
    clientCpuIdle: sum(idleMarks, (r) => r.cpu),
    clientCpuBroadcast: sum(broadcastMarks, (r) => r.cpu),
    requestsPerDelivery: sum(broadcastMarks, (r) => r.http.GET + r.http.POST) / Math.max(received, 1),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.at(-1),
  };
}

function print(results, o) {
  const f = (n, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  console.log(`\n${o.clients} clients in ${o.workers} workers, idle ${o.idleSecs} s, ${o.rate} broadcasts/s for ${o.broadcastSecs} s`);
  console.log(`load average before: ${o.loadBefore}; after: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
  for (const r of results) {
    console.log(`\n== ${r.transport}`);
    console.log(`joined in ${f(r.joinSecs, 1)} s; server RSS ${f(r.baseRss / 2 ** 20, 1)} MiB → ${f(r.idleRss / 2 ** 20, 1)} MiB after idle`);
    console.log(`bytes per idle joined session: ${f(r.bytesPerSessionIdle)} (right after joining: ${f(r.bytesPerSessionJoined)})`);
    console.log(`idle HTTP requests per session per minute: ${f(r.idleGetsPerMin + r.idlePostsPerMin, 2)} (GET ${f(r.idleGetsPerMin, 2)}, POST ${f(r.idlePostsPerMin, 2)})`);
    console.log(`idle server CPU per session per minute: ${f(r.idleCpuUsPerSessionMin, 1)} µs (the clients' processes: ${f(r.clientCpuIdle, 2)} s)`);
    console.log(`deliveries: ${f(r.received)} of ${f(r.expected)} (lost ${r.lost}, duplicates ${r.duplicates}, out of order ${r.outOfOrder}); socket errors ${r.disruptions}`);
    console.log(`server CPU ${f(r.cpuSecs, 2)} s over ${f(r.deliverSecs, 1)} s: ${f(r.cpuUsPerDelivery, 2)} µs per delivery; HTTP requests per delivery ${f(r.requestsPerDelivery, 3)}; the clients' processes: ${f(r.clientCpuBroadcast, 2)} s`);
    console.log(`delivery latency p50 / p99 / max: ${r.p50} / ${r.p99} / ${r.max} ms`);
  }
  const [lp, ws] = ["longpoll", "websocket"].map((t) => results.find((r) => r.transport === t));
  if (lp && ws) {
    console.log(`\nLongPoll / WebSocket: memory ×${f(lp.bytesPerSessionIdle / ws.bytesPerSessionIdle, 2)}, CPU per delivery ×${f(lp.cpuUsPerDelivery / ws.cpuUsPerDelivery, 2)}`);
  }
}

async function main() {
  const target = process.env.CARGO_TARGET_DIR ?? fileURLToPath(new URL("../target", import.meta.url));
  const o = {
    echo: option("echo", `${target}/release/examples/echo`),
    clients: option("clients", 1000),
    workers: option("workers", 2),
    idleSecs: option("idle-secs", 60),
    rate: option("rate", 5),
    broadcastSecs: option("broadcast-secs", 10),
    transports: option("transports", "longpoll,websocket").split(","),
    loadBefore: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
  };
  if (!existsSync(o.echo)) fail(`no echo example at ${o.echo}: cargo build --release -p fawkes-runtime --example echo`);
  for (const [name, n] of Object.entries({ clients: o.clients, workers: o.workers, "idle-secs": o.idleSecs, rate: o.rate, "broadcast-secs": o.broadcastSecs })) {
    if (!(n > 0)) fail(`--${name} must be a positive number`);
  }
  if (o.transports.some((t) => t !== "longpoll" && t !== "websocket")) fail("--transports takes longpoll and/or websocket");
  const results = [];
  for (const transport of o.transports) {
    console.log(`-- ${transport}: ${o.clients} clients…`);
    results.push(await phase(transport, o));
  }
  print(results, o);
  const bad = results.filter((r) => r.lost !== 0 || r.duplicates !== 0 || r.outOfOrder !== 0);
  if (bad.length > 0) fail(`deliveries lost, duplicated or out of order over ${bad.map((r) => r.transport).join(", ")}`);
  process.exit(0);
}

await (process.argv[2] === "worker" ? worker() : main());
