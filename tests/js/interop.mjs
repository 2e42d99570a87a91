// Interop scenarios: the official `phoenix` client (npm, pinned in package-lock.json) against a
// Fawkes server. Run by the Rust tests; exits non-zero on the first failure.
//
//   node interop.mjs fixture ws://127.0.0.1:PORT/socket
//   node interop.mjs app ws://127.0.0.1:PORT/socket TOKEN_A TOKEN_B TOKEN_C CONVERSATION_ID A_ID B_ID
//
// Every wait has a deadline; nothing sleeps a fixed time.
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";

const [mode, url, ...tokens] = process.argv.slice(2);
const DEADLINE_MS = 5000;

function fail(message) {
  console.error(`FAIL ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

function deepEqual(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Resolves when `register(resolve)` calls back, or fails after the deadline. */
function waitFor(what, register) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`timed out waiting for ${what}`), DEADLINE_MS);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

function receive(push, what) {
  return waitFor(what, (done) => {
    push
      .receive("ok", (response) => done({ status: "ok", response }))
      .receive("error", (response) => done({ status: "error", response }))
      .receive("timeout", () => fail(`${what}: push timed out`));
  });
}

function socket(opts) {
  const s = new Socket(url, { transport: WebSocket, rejoinAfterMs: () => 50, reconnectAfterMs: () => 50, ...opts });
  s.onError((e) => {
    if (opts.expectErrors !== true) console.error("socket error", e?.message ?? e);
  });
  s.connect();
  return s;
}

const scenarios = {
  async "connect with an auth token, join, push and get the reply"() {
    const s = socket({ authToken: "s3cret" });
    const channel = s.channel("lab:js", { push_on_join: true });
    const welcome = waitFor("welcome push", (done) => channel.on("welcome", done));
    const joined = await receive(channel.join(), "join");
    check(joined.status === "ok" && deepEqual(joined.response, { joined: "lab:js" }), `join: ${JSON.stringify(joined)}`);
    check(deepEqual(await welcome, { user: "token:s3cret" }), "authToken reached connect");
    const reply = await receive(channel.push("echo", { a: 1, s: "ünïcødé ✓" }), "echo");
    check(reply.status === "ok" && deepEqual(reply.response, { a: 1, s: "ünïcødé ✓" }), `echo: ${JSON.stringify(reply)}`);
    const custom = await waitFor("custom status", (done) => channel.push("custom", { x: 1 }).receive("maybe", done));
    check(deepEqual(custom, { x: 1 }), "custom status");
    s.disconnect();
  },

  async "receive a broadcast from another client"() {
    const a = socket({ params: { user: "ann" } });
    const b = socket({ params: { user: "bob" } });
    const ca = a.channel("lab:room", {});
    const cb = b.channel("lab:room", {});
    await receive(ca.join(), "ann join");
    await receive(cb.join(), "bob join");
    const got = waitFor("shout at bob", (done) => cb.on("shout", done));
    await receive(ca.push("broadcast", { body: "hello bob" }), "broadcast push");
    check(deepEqual(await got, { body: "hello bob" }), "broadcast payload");
    a.disconnect();
    b.disconnect();
  },

  async "heartbeats are answered"() {
    const s = socket({ params: { user: "hb" }, heartbeatIntervalMs: 100 });
    let replies = 0;
    await waitFor("three heartbeat replies", (done) => {
      s.onMessage((msg) => {
        if (msg.topic === "phoenix" && msg.event === "phx_reply" && msg.payload.status === "ok" && ++replies === 3) done();
      });
    });
    check(s.isConnected(), "still connected after heartbeats");
    const rtt = await waitFor("ping", (done) => s.ping(done));
    check(typeof rtt === "number", "ping round trip");
    s.disconnect();
  },

  async "leave closes the channel"() {
    const s = socket({ params: { user: "lv" } });
    const channel = s.channel("lab:leave", {});
    await receive(channel.join(), "join");
    const closed = waitFor("onClose", (done) => channel.onClose(done));
    await receive(channel.leave(), "leave");
    await closed;
    check(channel.state === "closed", `state after leave: ${channel.state}`);
    s.disconnect();
  },

  async "a second Channel object for a joined topic replaces the first"() {
    const s = socket({ params: { user: "dup" } });
    const first = s.channel("lab:dup", {});
    await receive(first.join(), "first join");
    await receive(first.push("count", {}), "count on the first");
    const firstClosed = waitFor("the first channel closed", (done) => first.onClose(done));
    const second = s.channel("lab:dup", {});
    const joined = await receive(second.join(), "second join");
    check(joined.status === "ok", `second join: ${JSON.stringify(joined)}`);
    await firstClosed;
    const count = await receive(second.push("count", {}), "count on the second");
    check(count.response.count === 1, `a fresh join: ${JSON.stringify(count)}`);
    s.disconnect();
  },

  async "an unauthorized join is refused"() {
    const s = socket({ params: { user: "nosy" } });
    const channel = s.channel("lab:secret", { refuse: true });
    const result = await receive(channel.join(), "refused join");
    check(result.status === "error" && deepEqual(result.response, { reason: "unauthorized" }), `refusal: ${JSON.stringify(result)}`);
    channel.leave();
    const unmatched = s.channel("nope:1", {});
    const r = await receive(unmatched.join(), "unmatched join");
    check(deepEqual(r.response, { reason: "unmatched topic" }), `unmatched: ${JSON.stringify(r)}`);
    unmatched.leave();
    s.disconnect();
  },

  async "phx_error is recovered by rejoining"() {
    const s = socket({ params: { user: "crashy" } });
    const channel = s.channel("lab:crashy", {});
    let joins = 0;
    const rejoined = waitFor("two successful joins", (done) => channel.join().receive("ok", () => ++joins === 2 && done()));
    await waitFor("first join", (done) => {
      const poll = setInterval(() => joins === 1 && (clearInterval(poll), done()), 5);
    });
    const count = await receive(channel.push("count", {}), "count");
    check(count.response.count === 1, "count 1");
    const errored = waitFor("onError", (done) => channel.onError(done));
    channel.push("panic", {});
    const reason = await errored;
    check(deepEqual(reason, { reason: "channel_crash" }), `phx_error payload: ${JSON.stringify(reason)}`);
    await rejoined;
    const fresh = await receive(channel.push("count", {}), "count after rejoin");
    check(fresh.response.count === 1, `fresh state after rejoin: ${JSON.stringify(fresh)}`);
    s.disconnect();
  },

  async "binary payloads round-trip as ArrayBuffers"() {
    const s = socket({ params: { user: "bin" } });
    const channel = s.channel("lab:bin", {});
    await receive(channel.join(), "join");
    const bytes = new Uint8Array([0, 1, 2, 250, 255]);
    const reply = await receive(channel.push("echo", bytes.buffer), "binary echo");
    check(reply.status === "ok", "binary reply ok");
    check(reply.response instanceof ArrayBuffer, `response is an ArrayBuffer: ${Object.prototype.toString.call(reply.response)}`);
    check(deepEqual(Array.from(new Uint8Array(reply.response)), Array.from(bytes)), "same bytes");
    s.disconnect();
  },

  async "vsn 1.0.0 with object frames"() {
    const encode = (msg, callback) =>
      callback(JSON.stringify({ join_ref: msg.join_ref, ref: msg.ref, topic: msg.topic, event: msg.event, payload: msg.payload }));
    const decode = (raw, callback) => {
      const { join_ref, ref, topic, event, payload } = JSON.parse(raw);
      callback({ join_ref, ref, topic, event, payload });
    };
    const s = socket({ params: { user: "v1" }, vsn: "1.0.0", encode, decode });
    const channel = s.channel("lab:v1", {});
    const joined = await receive(channel.join(), "v1 join");
    check(joined.status === "ok", "v1 join ok");
    const reply = await receive(channel.push("echo", { v: 1 }), "v1 echo");
    check(deepEqual(reply.response, { v: 1 }), "v1 echo payload");
    s.disconnect();
  },
};

const appScenarios = {
  async "a real access token, as authToken and as a param"() {
    const [tokenA, tokenB] = tokens;
    const a = socket({ authToken: tokenA });
    const b = socket({ params: { token: tokenB } });
    const ca = a.channel("room:lobby", {});
    const cb = b.channel("room:lobby", {});
    check((await receive(ca.join(), "join with authToken")).status === "ok", "authToken join");
    check((await receive(cb.join(), "join with token param")).status === "ok", "param join");
    const reply = await receive(ca.push("ping", { n: 7 }), "ping");
    check(deepEqual(reply.response, { n: 7 }), "ping echo");
    a.disconnect();
    b.disconnect();
  },

  async "three clients' Presence stays in sync through joins, an update, a leave and a disconnect"() {
    const [tokenA, tokenB, tokenC] = tokens;
    const topic = "room:presence-js";
    const clients = {};
    const start = (name, token, opts = {}) => {
      const s = socket({ authToken: token, ...opts });
      const channel = s.channel(topic, {});
      const presence = new Presence(channel);
      clients[name] = { s, channel, presence };
      return channel;
    };
    const view = (name) =>
      clients[name].presence
        .list((_id, { metas }) => metas.map((m) => (m.status ? `${m.name}:${m.status}` : m.name)).join("+"))
        .sort();
    const converge = async (names, expected, step) => {
      const deadline = Date.now() + DEADLINE_MS;
      for (const name of names) {
        while (!deepEqual(view(name), expected)) {
          if (Date.now() > deadline) fail(`${step}: ${name} sees ${JSON.stringify(view(name))}, expected ${JSON.stringify(expected)}`);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    };

    await receive(start("ann", tokenA).join(), "ann join");
    await converge(["ann"], ["Ann"], "ann joined");
    // Bob will be cut off abruptly later: keep him from coming back during the test.
    await receive(start("bob", tokenB, { reconnectAfterMs: () => 60000, rejoinAfterMs: () => 60000 }).join(), "bob join");
    await converge(["ann", "bob"], ["Ann", "Bob"], "bob joined");
    await receive(start("cy", tokenC).join(), "cy join");
    await converge(["ann", "bob", "cy"], ["Ann", "Bob", "Cy"], "cy joined");

    const update = await receive(clients.bob.channel.push("status:set", { status: "away" }), "status update");
    check(update.status === "ok", `update: ${JSON.stringify(update)}`);
    await converge(["ann", "bob", "cy"], ["Ann", "Bob:away", "Cy"], "bob updated");

    await receive(clients.cy.channel.leave(), "cy leave");
    await converge(["ann", "bob"], ["Ann", "Bob:away"], "cy left");

    clients.bob.s.conn.terminate(); // no close frame: the TCP connection just dies
    await converge(["ann"], ["Ann"], "bob disconnected abruptly");

    for (const { s } of Object.values(clients)) s.disconnect();
  },

  async "a conversation recovers what it missed across a reconnect and gets the rest live"() {
    const [tokenA, tokenB, , conversationId] = tokens;
    const api = `${url.replace(/^ws/, "http").replace(/\/socket$/, "")}/api/v1/conversations/${conversationId}/messages`;
    const post = async (content) => {
      const response = await fetch(api, {
        method: "POST",
        headers: { authorization: `Bearer ${tokenA}`, "content-type": "application/json" },
        body: JSON.stringify({ content }),
      });
      check(response.status === 201, `post ${content}: ${response.status}`);
    };
    // What a client keeps: every message once, in id order, and the newest id it has.
    const seen = new Map();
    let lastSeen = 0;
    const keep = (message) => {
      seen.set(message.id, message.content);
      lastSeen = Math.max(lastSeen, message.id);
    };
    const contents = () => [...seen.entries()].sort((x, y) => x[0] - y[0]).map(([, c]) => c);
    const until = async (expected, step) => {
      const deadline = Date.now() + DEADLINE_MS;
      while (!deepEqual(contents(), expected)) {
        if (Date.now() > deadline) fail(`${step}: has ${JSON.stringify(contents())}, expected ${JSON.stringify(expected)}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };

    const bob = socket({ authToken: tokenB });
    const channel = bob.channel(`conversation:${conversationId}`, () => ({ last_seen_id: lastSeen }));
    channel.on("message:new", ({ message }) => keep(message));
    let joins = 0;
    const joined = waitFor("the first join", (done) =>
      channel
        .join()
        .receive("ok", ({ messages = [] }) => {
          joins += 1;
          messages.forEach(keep);
          done();
        })
        .receive("error", (e) => fail(`conversation join: ${JSON.stringify(e)}`)),
    );
    await joined;
    await until(["m0"], "history in the join reply");
    await post("live1");
    await until(["m0", "live1"], "a live message");

    bob.disconnect();
    await post("away1");
    await post("away2");
    bob.connect(); // phoenix.js rejoins with the params closure: the new last_seen_id
    await until(["m0", "live1", "away1", "away2"], "recovered after the rejoin");
    check(joins === 2, `joined ${joins} times`);
    await post("live2");
    await until(["m0", "live1", "away1", "away2", "live2"], "live after the rejoin");

    const outsider = socket({ authToken: tokens[2] });
    const refused = await receive(outsider.channel(`conversation:${conversationId}`, {}).join(), "outsider join");
    check(refused.status === "error" && refused.response.reason === "unauthorized", `outsider: ${JSON.stringify(refused)}`);
    outsider.disconnect();
    bob.disconnect();
  },

  async "two users chat over room:chat and every device of the recipient gets each message"() {
    const [tokenA, tokenB, , conversationId, aId, bId] = tokens;
    const conv = Number(conversationId);
    const start = (token) => {
      const s = socket({ authToken: token });
      const channel = s.channel("room:chat", {});
      const inbox = [];
      channel.on("receive_msg", ({ message }) => inbox.push(message));
      return { s, channel, inbox };
    };
    const ann = start(tokenA);
    const phone = start(tokenB);
    const laptop = start(tokenB);
    for (const [name, client] of Object.entries({ ann, phone, laptop })) {
      check((await receive(client.channel.join(), `${name} joins room:chat`)).status === "ok", `${name} join`);
    }
    const arrives = async (client, id, step) => {
      const deadline = Date.now() + DEADLINE_MS;
      while (!client.inbox.some((m) => m.id === id)) {
        if (Date.now() > deadline) fail(`${step}: ${JSON.stringify(client.inbox)}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return client.inbox.find((m) => m.id === id);
    };

    const sent = await receive(
      ann.channel.push("send_msg", { user: Number(bId), conv, message: "hello from js" }),
      "ann sends",
    );
    check(sent.status === "ok" && sent.response.delivered === 2, `send: ${JSON.stringify(sent)}`);
    const { message } = sent.response;
    check(message.content === "hello from js" && message.sender_id === Number(aId), `message: ${JSON.stringify(message)}`);
    for (const [name, device] of Object.entries({ phone, laptop })) {
      const got = await arrives(device, message.id, `bob's ${name} receives`);
      check(deepEqual(got, message), `${name} got ${JSON.stringify(got)}`);
    }

    const answer = await receive(
      phone.channel.push("send_msg", { user: Number(aId), conv, message: "hi ann" }),
      "bob answers",
    );
    check(answer.status === "ok" && answer.response.delivered === 1, `answer: ${JSON.stringify(answer)}`);
    await arrives(ann, answer.response.message.id, "ann receives the answer");

    const wrong = await receive(
      ann.channel.push("send_msg", { user: Number(aId), conv, message: "to myself" }),
      "a wrong recipient",
    );
    check(wrong.status === "error" && wrong.response.reason === "wrong_recipient", `wrong: ${JSON.stringify(wrong)}`);
    const again = await receive(
      ann.channel.push("send_msg", { user: Number(bId), conv, message: "still here" }),
      "send after an error",
    );
    check(again.status === "ok", `the channel lives on: ${JSON.stringify(again)}`);
    check(ann.channel.state === "joined", `ann's channel is ${ann.channel.state}`);
    for (const { s } of [ann, phone, laptop]) s.disconnect();
  },

  async "a bad token never connects"() {
    const s = socket({ params: { token: "forged" }, expectErrors: true });
    await waitFor("a connection error", (done) => s.onError(done));
    check(!s.isConnected(), "not connected");
    s.disconnect();
  },
};

const chosen = mode === "app" ? appScenarios : scenarios;
for (const [name, run] of Object.entries(chosen)) {
  await run();
  console.log(`ok ${name}`);
}
console.log(`${Object.keys(chosen).length} passed, 0 failed`);
process.exit(0);
