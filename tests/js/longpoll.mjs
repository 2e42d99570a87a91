// LongPoll scenarios: the official `phoenix` client (npm, pinned in package-lock.json) with
// `transport: LongPoll` against a Fawkes server with `longpoll` on, beside WebSocket clients.
// Run by the Rust tests (runtime/tests/realtime/longpoll_js.rs, tests/api/longpoll.rs); prints
// `ok <scenario>` as it goes and exits non-zero on the first failure.
//
//   node longpoll.mjs fixture ws://127.0.0.1:PORT/socket     (the runtime's test socket)
//   node longpoll.mjs app ws://…/socket TOKEN_A TOKEN_A2 TOKEN_B TOKEN_C CONVERSATION_ID A_ID B_ID
//   node longpoll.mjs app-cap ws://…/socket TOKEN           (the app with max_sockets_per_id 2)
//   node longpoll.mjs child ws://…/socket USER TOPIC        (used by the scenarios themselves)
//
// The server's poll window is expected to be short (about a second): the scenarios wait for
// sessions to end. Every wait has a deadline; nothing sleeps a fixed time.
import { LongPoll } from "phoenix";
import WebSocket from "ws";
import {
  check,
  converge,
  deepEqual,
  join,
  json,
  killChild,
  memoryStorage,
  openOverLongPoll,
  presence,
  receive,
  socket,
  spawnChild,
  startProxy,
  until,
  waitFor,
  wsSocket,
} from "./lp-common.mjs";
import { appScenarios, capScenarios } from "./longpoll-app.mjs";

const [mode, url, ...args] = process.argv.slice(2);
/** How long a session may take to end once its client stops polling (1.5 windows and slack). */
const SESSION_END_MS = 10000;

const scenarios = {
  async "LongPoll connects with an auth token, joins, pushes and gets the reply"() {
    const s = socket(url, { authToken: "s3cret" });
    const channel = s.channel("lab:lp", { push_on_join: true });
    const welcome = waitFor("welcome push", (done) => channel.on("welcome", done));
    const joined = await join(channel, "join");
    check(deepEqual(joined, { joined: "lab:lp" }), `join reply: ${json(joined)}`);
    await openOverLongPoll(s, "the socket");
    check(deepEqual(await welcome, { user: "token:s3cret" }), "the auth token reached connect (X-Phoenix-AuthToken)");
    const reply = await receive(channel.push("echo", { a: 1, s: "ünïcødé ✓" }), "echo");
    check(reply.status === "ok" && deepEqual(reply.response, { a: 1, s: "ünïcødé ✓" }), `echo: ${json(reply)}`);
    const custom = await waitFor("custom status", (done) => channel.push("custom", { x: 1 }).receive("maybe", done));
    check(deepEqual(custom, { x: 1 }), "custom status");
    for (const n of [1, 2]) {
      const count = await receive(channel.push("count", {}), `count ${n}`);
      check(count.response.count === n, `the channel keeps its state: ${json(count)}`);
    }
    const rtt = await waitFor("a ping (a heartbeat over POST, its reply over a poll)", (done) => check(s.ping(done), "ping sent"));
    check(typeof rtt === "number", "ping round trip");
    s.disconnect();
  },

  async "a channel crash over LongPoll is recovered by rejoining"() {
    const s = socket(url, { params: { user: "crashy" } });
    const channel = s.channel("lab:crashy", {});
    let joins = 0;
    channel.join().receive("ok", () => (joins += 1));
    await until("the first join", () => joins === 1);
    check((await receive(channel.push("count", {}), "count")).response.count === 1, "count 1");
    const errored = waitFor("onError", (done) => channel.onError(done));
    channel.push("panic", {});
    check(deepEqual(await errored, { reason: "channel_crash" }), "phx_error payload");
    await until("the rejoin", () => joins === 2, () => `${joins} joins`);
    const fresh = await receive(channel.push("count", {}), "count after the rejoin");
    check(fresh.response.count === 1, `fresh state after the rejoin: ${json(fresh)}`);
    check(s.conn instanceof LongPoll && s.errors.length === 0, `the same session: ${json(s.errors)}`);
    s.disconnect();
  },

  async "a burst of 150 pushes goes out in batches of at most 100 and every reply comes back in order"() {
    const s = socket(url, { params: { user: "burst" } });
    const channel = s.channel("lab:burst", {});
    await join(channel, "join");
    // One event-loop tick: phoenix.js batches them into POSTs of 100 and 50 lines.
    const replies = await Promise.all(Array.from({ length: 150 }, (_, i) => receive(channel.push("count", { i }), `count ${i}`)));
    const counts = replies.map((r) => r.response.count);
    check(deepEqual(counts, Array.from({ length: 150 }, (_, i) => i + 1)), `counts: ${json(counts)}`);
    s.disconnect();
  },

  async "broadcasts go both ways between LongPoll and WebSocket clients in one room"() {
    const lp = socket(url, { params: { user: "ann" } });
    const ws = wsSocket(url, { params: { user: "bob" } });
    const ca = lp.channel("lab:mixed", {});
    const cb = ws.channel("lab:mixed", {});
    await join(ca, "LongPoll join");
    await join(cb, "WebSocket join");
    const atBob = waitFor("the shout at bob (WebSocket)", (done) => cb.on("shout", done));
    const atAnn = waitFor("ann's own shout (LongPoll)", (done) => ca.on("shout", done));
    await receive(ca.push("broadcast", { body: "from LongPoll" }), "LongPoll broadcast");
    check(deepEqual(await atBob, { body: "from LongPoll" }), "WebSocket got the LongPoll broadcast");
    check(deepEqual(await atAnn, { body: "from LongPoll" }), "LongPoll got its own broadcast");
    ca.off("shout");
    const back = waitFor("the shout at ann (LongPoll)", (done) => ca.on("shout", done));
    await receive(cb.push("broadcast_from", { body: "from WebSocket" }), "WebSocket broadcast");
    check(deepEqual(await back, { body: "from WebSocket" }), "LongPoll got the WebSocket broadcast");
    // An intercepted event goes through each subscriber's handle_out with its own assigns.
    const seenByAnn = waitFor("ann's intercepted event", (done) => ca.on("intercepted", done));
    const seenByBob = waitFor("bob's intercepted event", (done) => cb.on("intercepted", done));
    await receive(cb.push("intercept", { n: 1 }), "intercept");
    check(deepEqual(await seenByAnn, { n: 1, seen_by: "ann" }), "handle_out for the LongPoll subscriber");
    check(deepEqual(await seenByBob, { n: 1, seen_by: "bob" }), "handle_out for the WebSocket subscriber");
    lp.disconnect();
    ws.disconnect();
  },

  async "250 broadcasts reach the LongPoll client in order, once each"() {
    const lp = socket(url, { params: { user: "reader" } });
    const ws = wsSocket(url, { params: { user: "writer" } });
    const ca = lp.channel("lab:many", {});
    const cb = ws.channel("lab:many", {});
    const got = [];
    ca.on("shout", ({ n }) => got.push(n));
    await join(ca, "LongPoll join");
    await join(cb, "WebSocket join");
    const sent = Array.from({ length: 250 }, (_, n) => n);
    await Promise.all(sent.map((n) => receive(cb.push("broadcast_from", { n }), `broadcast ${n}`)));
    await until("all 250 at the LongPoll client", () => got.length >= 250, () => `${got.length} so far`);
    check(deepEqual(got, sent), `in order, once each: ${json(got)}`);
    lp.disconnect();
    ws.disconnect();
  },

  async "LongPoll and WebSocket clients see each other join and leave in presence"() {
    const topic = "presence:mixed";
    const lp = socket(url, { params: { user: "lp" } });
    const ws = wsSocket(url, { params: { user: "ws" } });
    let lpChannel = lp.channel(topic, { device: "longpoll" });
    const wsChannel = ws.channel(topic, { device: "websocket" });
    let lpView = presence(lpChannel);
    const wsView = presence(wsChannel);
    await join(lpChannel, "LongPoll join");
    await converge({ lp: lpView }, ["lp"], "LongPoll alone");
    await join(wsChannel, "WebSocket join");
    await converge({ lp: lpView, ws: wsView }, ["lp", "ws"], "both joined");
    await receive(lpChannel.leave(), "LongPoll leave");
    await converge({ ws: wsView }, ["ws"], "LongPoll left");
    lpChannel = lp.channel(topic, { device: "longpoll" });
    lpView = presence(lpChannel);
    await join(lpChannel, "LongPoll joins again");
    await converge({ lp: lpView, ws: wsView }, ["lp", "ws"], "LongPoll back");
    await receive(wsChannel.leave(), "WebSocket leave");
    await converge({ lp: lpView }, ["lp"], "WebSocket left");
    lp.disconnect();
    ws.disconnect();
  },

  async "binary pushes from LongPoll travel as base64 lines and arrive as bytes"() {
    const lp = socket(url, { params: { user: "binlp" } });
    const ws = wsSocket(url, { params: { user: "binws" } });
    const ca = lp.channel("lab:bin", {});
    const cb = ws.channel("lab:bin", {});
    await join(ca, "LongPoll join");
    await join(cb, "WebSocket join");
    const bytes = new Uint8Array([0, 1, 2, 10, 13, 250, 255]);
    const got = waitFor("the bytes at the WebSocket client", (done) => cb.on("shout", done));
    // broadcast_from: the LongPoll client does not get the binary frame back, which phoenix.js
    // 1.8's LongPoll could not decode (it only takes text frames from the server).
    const reply = await receive(ca.push("broadcast_from", bytes.buffer), "binary push");
    check(reply.status === "ok", `binary push reply: ${json(reply)}`);
    const payload = await got;
    check(payload instanceof ArrayBuffer, `an ArrayBuffer: ${Object.prototype.toString.call(payload)}`);
    check(deepEqual(Array.from(new Uint8Array(payload)), Array.from(bytes)), `same bytes: ${Array.from(new Uint8Array(payload))}`);
    const after = await receive(ca.push("echo", { still: "text" }), "a text push after the binary one");
    check(deepEqual(after.response, { still: "text" }), "the session lives on");
    lp.disconnect();
    ws.disconnect();
  },

  async "a killed LongPoll client's session ends and the WebSocket client sees it leave"() {
    const topic = "presence:killed";
    const ws = wsSocket(url, { params: { user: "watcher" } });
    const channel = ws.channel(topic, {});
    const view = presence(channel);
    await join(channel, "watcher join");
    const child = await spawnChild([url, "doomed", topic]);
    await converge({ watcher: view }, ["doomed", "watcher"], "the child joined");
    await killChild(child);
    await converge({ watcher: view }, ["watcher"], "the killed client's presence left", SESSION_END_MS);
    ws.disconnect();
  },

  async "a stalled client's session ends; the 410 after the stall makes it rejoin on a new session"() {
    const topic = "presence:stalled";
    const proxy = await startProxy(url.replace(/^ws/, "http"));
    const lp = socket(proxy.url, { params: { user: "stalled" }, expectErrors: true });
    const ws = wsSocket(url, { params: { user: "watcher" } });
    const lpChannel = lp.channel(topic, {});
    const wsChannel = ws.channel(topic, {});
    const view = presence(wsChannel);
    let joins = 0;
    lpChannel.join().receive("ok", () => (joins += 1));
    await until("the LongPoll join", () => joins === 1);
    await join(wsChannel, "watcher join");
    await converge({ watcher: view }, ["stalled", "watcher"], "both joined");
    proxy.hold(); // the client's next poll never reaches the server
    await converge({ watcher: view }, ["watcher"], "the stalled session ended", SESSION_END_MS);
    check(lp.errors.length === 0, `the client saw nothing yet: ${json(lp.errors)}`);
    proxy.release();
    await until("the client told its session is gone", () => lp.errors.includes(410), () => json(lp.errors));
    await until("the rejoin", () => joins === 2, () => `${joins} joins`);
    await converge({ watcher: view }, ["stalled", "watcher"], "back on a new session");
    const reply = await receive(lpChannel.push("update", { back: true }), "a push on the new session");
    check(reply.status === "ok", `update on the new session: ${json(reply)}`);
    lp.disconnect();
    ws.disconnect();
    proxy.close();
  },

  async "longPollFallbackMs falls back to LongPoll when a proxy refuses the WebSocket upgrade"() {
    const proxy = await startProxy(url.replace(/^ws/, "http"));
    const store = memoryStorage();
    const behindProxy = (user) =>
      socket(proxy.url, { transport: WebSocket, longPollFallbackMs: 2500, sessionStorage: store, params: { user }, expectErrors: true });
    const s = behindProxy("fallback");
    await openOverLongPoll(s, "the socket behind the proxy");
    check(proxy.upgradesRefused >= 1, "it tried WebSocket first");
    check(proxy.longpolls >= 1, "its LongPoll requests went through the proxy");
    check(store.getItem("phx:fallback:LongPoll") === "true", `the fallback is remembered: ${json([...store.items])}`);
    const direct = wsSocket(url, { params: { user: "direct" } });
    const ca = s.channel("lab:fallback", {});
    const cb = direct.channel("lab:fallback", {});
    await join(ca, "join over the fallback");
    await join(cb, "direct join");
    const reply = await receive(ca.push("echo", { over: "fallback" }), "echo over the fallback");
    check(deepEqual(reply.response, { over: "fallback" }), `echo: ${json(reply)}`);
    const atDirect = waitFor("the shout at the direct client", (done) => cb.on("shout", done));
    const atProxied = waitFor("the shout at the proxied client", (done) => ca.on("shout", done));
    await receive(ca.push("broadcast_from", { hi: "direct" }), "broadcast over the fallback");
    check(deepEqual(await atDirect, { hi: "direct" }), "the direct client got it");
    await receive(cb.push("broadcast_from", { hi: "proxied" }), "broadcast to the fallback");
    check(deepEqual(await atProxied, { hi: "proxied" }), "the proxied client got it");
    check(s.conn instanceof LongPoll, "still on LongPoll");

    // The next socket of this "page" remembers the fallback and goes straight to LongPoll.
    const refused = proxy.upgradesRefused;
    const again = behindProxy("fallback2");
    await openOverLongPoll(again, "the second socket");
    check(proxy.upgradesRefused === refused, "no WebSocket attempt once LongPoll is remembered");
    await join(again.channel("lab:fallback2", {}), "join on the second socket");
    for (const one of [s, again, direct]) one.disconnect();
    proxy.close();
  },
};

/** A LongPoll client in a process of its own: joins TOPIC as USER and waits to be killed. */
async function child() {
  const [user, topic] = args;
  // The parent holds our input: if it goes away, so do we.
  process.stdin.on("close", () => process.exit(0));
  process.stdin.resume();
  const s = socket(url, { params: { user }, reconnectAfterMs: () => 60000 });
  await join(s.channel(topic, {}), "child join");
  await openOverLongPoll(s, "the child's socket");
  console.log("joined");
}

if (mode === "child") {
  await child();
} else {
  const chosen = { fixture: scenarios, app: appScenarios(url, args), "app-cap": capScenarios(url, args) }[mode];
  check(chosen !== undefined, `unknown mode ${mode}`);
  for (const [name, run] of Object.entries(chosen)) {
    await run();
    console.log(`ok ${name}`);
  }
  console.log(`${Object.keys(chosen).length} passed, 0 failed`);
  process.exit(0);
}
