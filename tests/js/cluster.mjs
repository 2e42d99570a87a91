// Cluster scenarios: official `phoenix` clients (npm, pinned in package-lock.json) on several
// Fawkes nodes linked by Redis. Run by tests/api/cluster.rs:
//
//   node cluster.mjs MODE CONFIG_JSON
//
// CONFIG_JSON: {"nodes": [ws URL of node-1, …], "http": [http URL of node-1, …],
// "users": {NAME: {"id", "token"}}, …}. When the test has to act (kill a node, stop Redis),
// the script prints `STEP <what>` and waits for one JSON line on its input (the new state,
// e.g. a restarted node's URL). It prints `ok <check>` as it goes, and `FAIL <why>` (exit 1)
// at the first failure. Every wait has a deadline; nothing sleeps a fixed time.
import { createInterface } from "node:readline";
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";

const [mode, configJson] = process.argv.slice(2);
const config = JSON.parse(configJson);
const users = config.users ?? {};
/** The default deadline of a wait. */
const DEADLINE_MS = 10000;

function fail(message) {
  console.log(`FAIL ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

const json = (value) => JSON.stringify(value);

/** Resolves when `register(resolve)` calls back, or fails after the deadline. */
function waitFor(what, register, deadlineMs = DEADLINE_MS) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`timed out waiting for ${what}`), deadlineMs);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** Polls `condition` every 10 ms until it holds, or fails with `describe()` at the deadline. */
async function until(what, condition, describe = () => "", deadlineMs = DEADLINE_MS) {
  const deadline = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > deadline) fail(`${what} within ${deadlineMs} ms: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function receive(push, what) {
  return waitFor(what, (done) => {
    push
      .receive("ok", (response) => done({ status: "ok", response }))
      .receive("error", (response) => done({ status: "error", response }))
      .receive("timeout", () => fail(`${what}: push timed out`));
  });
}

// Steps: the test's answers arrive one JSON line each.
const answers = [];
const waiting = [];
createInterface({ input: process.stdin }).on("line", (line) => {
  const value = JSON.parse(line);
  if (waiting.length > 0) waiting.shift()(value);
  else answers.push(value);
});

/** Asks the test to do `what`; resolves with its answer. */
function step(what) {
  console.log(`STEP ${what}`);
  return waitFor(`the test to ${what}`, (done) => (answers.length > 0 ? done(answers.shift()) : waiting.push(done)), 120000);
}

/** An HTTP call to node `n` (1-based) as `user`; resolves with {status, body}. */
async function api(n, method, path, user, body) {
  const headers = { authorization: `Bearer ${user.token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${config.http[n - 1]}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(DEADLINE_MS),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/**
 * A phoenix.js client of `user` on node `n`, on `topic`: its `message:new` and `receive_msg`
 * payloads kept in `inbox`, its presence in `presence`, its socket's opens, closes and errors
 * counted.
 */
function client(name, n, user, topic, opts = {}) {
  const s = new Socket(config.nodes[n - 1], {
    transport: WebSocket,
    authToken: user.token,
    rejoinAfterMs: () => 50,
    reconnectAfterMs: () => 50,
    ...opts,
  });
  const c = { name, user, s, inbox: [], opens: 0, closes: [], errorsAfterClose: 0 };
  s.onOpen(() => (c.opens += 1));
  s.onClose((event) => c.closes.push(event?.code));
  s.onError(() => c.closes.length > 0 && (c.errorsAfterClose += 1));
  s.connect();
  c.channel = s.channel(topic, opts.params ?? {});
  c.channel.on("message:new", (payload) => c.inbox.push(payload));
  c.channel.on("receive_msg", ({ message }) => c.inbox.push(message));
  c.presence = new Presence(c.channel);
  return c;
}

async function join(c) {
  const joined = await receive(c.channel.join(), `${c.name} joins ${c.channel.topic}`);
  check(joined.status === "ok", `${c.name} join: ${json(joined)}`);
  return joined.response;
}

/** What a client's Presence lists: {user id: number of metas}, keys sorted. */
function view(c) {
  const entries = c.presence.list((id, { metas }) => [id, metas.length]);
  return Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b)));
}

/** `{user id: metas}` from {NAME: metas}, keys sorted like `view`. */
function expected(byName) {
  const entries = Object.entries(byName).map(([name, metas]) => [users[name].id, metas]);
  return Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b)));
}

async function converge(clients, byName, what, deadlineMs = DEADLINE_MS) {
  const want = expected(byName);
  for (const c of clients) {
    await until(`${what}: ${c.name} lists ${json(byName)}`, () => json(view(c)) === json(want), () => `it lists ${json(view(c))}, ids ${json(ids())}`, deadlineMs);
  }
}

const ids = () => Object.fromEntries(Object.entries(users).map(([name, u]) => [name, u.id]));
const bodies = (c) => c.inbox.map((m) => m.body);
const count = (list, value) => list.filter((v) => v === value).length;

const scenarios = {
  async broadcast() {
    const { A, B, C } = users;
    const all = [client("A@node-1", 1, A, "room:lobby"), client("B@node-2", 2, B, "room:lobby"), client("C@node-3", 3, C, "room:lobby")];
    const [a, , c] = all;
    for (const x of all) await join(x);

    const hello = await receive(a.channel.push("message:new", { body: "hello from node-1" }), "a push on node-1");
    check(hello.status === "ok", `push: ${json(hello)}`);
    for (const x of all) {
      await until(`${x.name} gets the message pushed on node-1`, () => bodies(x).includes("hello from node-1"), () => json(x.inbox));
      const got = x.inbox.find((m) => m.body === "hello from node-1");
      check(String(got.user_id) === A.id, `${x.name} got ${json(got)}`);
    }
    console.log("ok a message pushed on node-1 reaches the clients of every node");

    const posted = await api(2, "POST", "/api/v1/rooms/lobby/messages", B, { body: "hello over REST" });
    check(posted.status === 202, `REST post on node-2: ${json(posted)}`);
    for (const x of all) {
      await until(`${x.name} gets the message posted on node-2`, () => bodies(x).includes("hello over REST"), () => json(x.inbox));
    }
    console.log("ok a REST room message posted on node-2 reaches the clients of every node");

    const sequence = Array.from({ length: 50 }, (_, i) => `in order ${i}`);
    const replies = await Promise.all(sequence.map((body) => receive(c.channel.push("message:new", { body }), body)));
    check(replies.every((r) => r.status === "ok"), `pushes: ${json(replies.filter((r) => r.status !== "ok"))}`);
    for (const x of all) {
      const ordered = () => bodies(x).filter((b) => b.startsWith("in order "));
      await until(`${x.name} gets the 50 messages of node-3`, () => ordered().length >= sequence.length, () => json(ordered()));
      check(json(ordered()) === json(sequence), `${x.name} got them in this order: ${json(ordered())}`);
    }
    console.log("ok 50 messages pushed by one client on node-3 arrive in order on every node");

    // By now every earlier message had plenty of time to arrive twice.
    for (const x of all) {
      for (const body of ["hello from node-1", "hello over REST", ...sequence]) {
        check(count(bodies(x), body) === 1, `${x.name} got "${body}" ${count(bodies(x), body)} times`);
      }
    }
    console.log("ok every client got every message exactly once");
    for (const x of all) x.s.disconnect();
  },

  async presence() {
    const { A, B, C } = users;
    // B connects on node-3 with a socket token node-1 issued.
    const issued = await api(1, "POST", "/api/v1/socket_tokens", B);
    check(issued.status === 201, `socket token from node-1: ${json(issued)}`);
    const a1 = client("A@node-1", 1, A, "room:lobby");
    const a2 = client("A@node-2", 2, A, "room:lobby");
    const b3 = client("B@node-3", 3, { ...B, token: issued.body.data.token }, "room:lobby");
    for (const x of [a1, a2, b3]) await join(x);
    await converge([a1, a2, b3], { A: 2, B: 1 }, "A on node-1 and node-2, B on node-3");
    console.log("ok every node's clients list A with two metas (node-1, node-2) and B with one (node-3)");

    const left = await receive(a2.channel.leave(), "A's node-2 device leaves");
    check(left.status === "ok", `leave: ${json(left)}`);
    await converge([a1, b3], { A: 1, B: 1 }, "after A's node-2 device left");
    console.log("ok A's device leaving on node-2 leaves A with one meta everywhere");

    const fresh = client("C@node-3", 3, C, "room:lobby");
    const state = waitFor("the fresh client's presence_state", (done) => fresh.channel.on("presence_state", done));
    await join(fresh);
    const first = await state;
    check(first[A.id]?.metas?.length === 1 && first[B.id]?.metas?.length === 1, `presence_state on node-3: ${json(first)} (ids ${json(ids())})`);
    console.log("ok a client joining on node-3 gets a presence_state with A and B");
    for (const x of [a1, a2, b3, fresh]) x.s.disconnect();
  },

  async direct() {
    const { X, Y } = users;
    const conv = Number(config.conversation);
    const x1 = client("X@node-1", 1, X, "room:chat");
    const x2 = client("X@node-2", 2, X, "room:chat");
    const y3 = client("Y@node-3", 3, Y, "room:chat");
    for (const c of [x1, x2, y3]) await join(c);

    const sent = await receive(y3.channel.push("send_msg", { user: Number(X.id), conv, message: "from node-3 to both of X's devices" }), "send_msg on node-3");
    check(sent.status === "ok" && sent.response.delivered === 2, `send_msg reply: ${json(sent)}`);
    for (const x of [x1, x2]) {
      await until(`${x.name} gets receive_msg`, () => x.inbox.some((m) => m.id === sent.response.message.id), () => json(x.inbox));
      check(json(x.inbox.find((m) => m.id === sent.response.message.id)) === json(sent.response.message), `${x.name}: ${json(x.inbox)}`);
    }
    console.log("ok send_msg on node-3 is delivered to X's devices on node-1 and node-2, and counted 2");

    const posted = await api(3, "POST", `/api/v1/conversations/${conv}/messages`, Y, { content: "over REST on node-3" });
    check(posted.status === 201 && posted.body?.meta?.delivered === 2, `REST post on node-3: ${json(posted)}`);
    for (const x of [x1, x2]) {
      await until(`${x.name} gets the REST message`, () => x.inbox.some((m) => m.id === posted.body.data.id), () => json(x.inbox));
    }
    console.log("ok a REST conversation message on node-3 counts meta.delivered 2 and reaches both devices");
    for (const c of [x1, x2, y3]) c.s.disconnect();
  },

  async logout() {
    const { X, W } = users;
    // X's session on node-1 and node-2; another session of X on node-1 stays.
    const x1 = client("X@node-1", 1, X, "room:chat");
    const x2 = client("X@node-2", 2, X, "room:chat");
    const other = client("X's other session@node-1", 1, { ...X, token: X.other }, "room:lobby");
    for (const c of [x1, x2, other]) await join(c);
    const out = await api(3, "DELETE", "/api/v1/sessions", X);
    check(out.status === 204, `logout on node-3: ${json(out)}`);
    await closedAndRefused([x1, x2], "after X logged out on node-3");
    const ping = await receive(other.channel.push("ping", { still: "here" }), "ping on X's other session");
    check(ping.status === "ok" && other.closes.length === 0, `X's other session: ${json(ping)}, closes ${json(other.closes)}`);
    console.log("ok X's other session is still connected");
    await refused(2, X, "X's revoked token on node-2");
    console.log("ok logging out on node-3 closes the session's sockets on node-1 and node-2, and its token connects nowhere");
    other.s.disconnect();

    const w1 = client("W@node-1", 1, W, "room:chat");
    const w2 = client("W@node-2", 2, W, "room:lobby");
    for (const c of [w1, w2]) await join(c);
    const deleted = await api(3, "DELETE", `/api/v1/users/${W.id}`, W);
    check(deleted.status === 204, `account deletion on node-3: ${json(deleted)}`);
    await closedAndRefused([w1, w2], "after W's account was deleted on node-3");
    await refused(2, W, "the deleted W's token on node-2");
    console.log("ok deleting an account on node-3 closes its sockets on node-1 and node-2, and its token connects nowhere");
  },

  async sigkill() {
    const { A, B, C, D } = users;
    const a1 = client("A@node-1", 1, A, "room:lobby");
    const c2 = client("C@node-2", 2, C, "room:lobby");
    const never = { reconnectAfterMs: () => 3600000, rejoinAfterMs: () => 3600000 };
    const b3 = client("B@node-3", 3, B, "room:lobby", never);
    for (const c of [a1, c2, b3]) await join(c);
    await converge([a1, c2, b3], { A: 1, B: 1, C: 1 }, "everyone in the lobby");
    const leaves = watchLeaves([a1, c2], B);

    await step("kill node-3");
    b3.s.disconnect(); // node-3 is gone: stop knocking at its port
    await converge([a1, c2], { A: 1, C: 1 }, "after node-3 was killed", 30000);
    check(leaves.every((l) => l.count > 0), `presence_diff leaves of B: ${json(leaves)}`);
    console.log("ok the clients on node-1 and node-2 see B leave after node-3 was killed");

    const { url } = await step("restart node-3");
    config.nodes[2] = url;
    const d1 = client("D@node-1", 1, D, "room:lobby");
    await join(d1);
    await converge([d1, a1, c2], { A: 1, C: 1, D: 1 }, "node-3 back, B not reconnected");
    console.log("ok after node-3 restarted under its name, a fresh client on node-1 lists no B");

    const back = client("B@node-3 again", 3, B, "room:lobby");
    await join(back);
    await converge([a1, c2, d1, back], { A: 1, B: 1, C: 1, D: 1 }, "B reconnected on node-3");
    console.log("ok B reconnecting on the restarted node-3 is listed once, with one meta, everywhere");
    for (const c of [a1, c2, d1, back]) c.s.disconnect();
  },

  async sigterm() {
    const { A, B, C } = users;
    const a1 = client("A@node-1", 1, A, "room:lobby");
    const c2 = client("C@node-2", 2, C, "room:lobby");
    const b3 = client("B@node-3", 3, B, "room:lobby", { reconnectAfterMs: () => 3600000, rejoinAfterMs: () => 3600000 });
    for (const c of [a1, c2, b3]) await join(c);
    await converge([a1, c2, b3], { A: 1, B: 1, C: 1 }, "everyone in the lobby");
    const leaves = watchLeaves([a1, c2], B);

    await step("terminate node-3");
    await converge([a1, c2], { A: 1, C: 1 }, "after node-3 got SIGTERM", 20000);
    check(leaves.every((l) => l.count > 0), `presence_diff leaves of B: ${json(leaves)}`);
    console.log("ok the clients on node-1 and node-2 see B leave promptly when node-3 shuts down");
    for (const c of [a1, c2, b3]) c.s.disconnect();
  },

  async redis() {
    const { X, Y, C } = users;
    const conv = config.conversation;
    const x1 = client("X@node-1", 1, X, "room:lobby");
    const c1 = client("C@node-1", 1, C, "room:lobby");
    const y2 = client("Y@node-2", 2, Y, "room:lobby");
    for (const c of [x1, c1, y2]) await join(c);
    await converge([x1, c1, y2], { X: 1, C: 1, Y: 1 }, "everyone in the lobby");

    // Both ends of the conversation, each on its own node, keeping what they saw.
    const conversation = (owner) => {
      const seen = new Map();
      const keep = (m) => seen.set(m.id, m.content);
      const channel = owner.s.channel(`conversation:${conv}`, () => ({ last_seen_id: Math.max(0, ...seen.keys()) }));
      channel.on("message:new", ({ message }) => keep(message));
      const joined = waitFor(`${owner.name} joins the conversation`, (done) =>
        channel
          .join()
          .receive("ok", ({ messages = [] }) => {
            messages.forEach(keep);
            done();
          })
          .receive("error", (e) => fail(`${owner.name} conversation join: ${json(e)}`)),
      );
      return { seen, joined, has: (content) => [...seen.values()].includes(content) };
    };
    const xc = conversation(x1);
    const yc = conversation(y2);
    await xc.joined;
    await yc.joined;
    const before = await api(2, "POST", `/api/v1/conversations/${conv}/messages`, Y, { content: "before the outage" });
    check(before.status === 201, `post before the outage: ${json(before)}`);
    await until("X on node-1 gets Y's message from node-2", () => xc.has("before the outage"), () => json([...xc.seen]));

    await step("stop redis");
    const local = await receive(x1.channel.push("message:new", { body: "local during the outage" }), "a push on node-1 during the outage");
    check(local.status === "ok", `push during the outage: ${json(local)}`);
    await until("C on node-1 gets X's message during the outage", () => bodies(c1).includes("local during the outage"), () => json(c1.inbox));
    console.log("ok during the outage node-1 still serves its own clients");
    const during = await api(2, "POST", `/api/v1/conversations/${conv}/messages`, Y, { content: "sent during the outage" });
    check(during.status === 201, `Y's post during the outage: ${json(during)}`);
    await until("Y on node-2 gets its own message during the outage", () => yc.has("sent during the outage"), () => json([...yc.seen]));
    console.log("ok during the outage Y's message is stored and delivered on node-2");

    await step("start redis");
    const after = await receive(x1.channel.push("message:new", { body: "after the outage" }), "a push on node-1 after the outage");
    check(after.status === "ok", `push after the outage: ${json(after)}`);
    await until("Y on node-2 gets X's message from node-1 after the outage", () => bodies(y2).includes("after the outage"), () => json(y2.inbox));
    console.log("ok once Redis is back, node-1's room messages reach node-2 again");
    await converge([x1, c1, y2], { X: 1, C: 1, Y: 1 }, "presence after the outage");
    console.log("ok once Redis is back, every node lists the same presences");

    const rejoined = waitFor("X's conversation rejoined", (done) => x1.s.onOpen(done));
    x1.s.disconnect();
    x1.s.connect(); // phoenix.js rejoins with the params closure: the newest id X has
    await rejoined;
    await until("X recovers Y's message from the outage", () => xc.has("sent during the outage"), () => json([...xc.seen]));
    console.log("ok X recovers the message Y sent during the outage by rejoining with last_seen_id");
    for (const c of [x1, c1, y2]) c.s.disconnect();
  },
};

/** Counts, per client, the `presence_diff` leaves of `user`. */
function watchLeaves(clients, user) {
  return clients.map((c) => {
    const seen = { client: c.name, count: 0 };
    c.channel.on("presence_diff", ({ leaves }) => {
      if (leaves && leaves[user.id]) seen.count += 1;
    });
    return seen;
  });
}

/**
 * Waits until each client's socket was closed by the server and a reconnect with the same
 * token was refused, without the socket ever opening again.
 */
async function closedAndRefused(clients, what) {
  const opensBefore = clients.map((c) => c.opens);
  const again = (c, i) => c.opens > opensBefore[i];
  for (const [i, c] of clients.entries()) {
    await until(`${c.name}'s socket closed ${what}`, () => c.closes.length > 0, () => `closes ${json(c.closes)}`);
    await until(`${c.name}'s reconnect refused ${what}`, () => c.errorsAfterClose > 0 || again(c, i), () => `closes ${json(c.closes)}`);
    check(!again(c, i), `${c.name} connected again ${what} (closes ${json(c.closes)})`);
  }
  for (const c of clients) c.s.disconnect();
}

/** A new socket of `user` on node `n` is refused and never opens. */
async function refused(n, user, what) {
  const s = new Socket(config.nodes[n - 1], { transport: WebSocket, authToken: user.token, reconnectAfterMs: () => 3600000 });
  let opened = false;
  s.onOpen(() => (opened = true));
  const errored = waitFor(`${what}: a connection error`, (done) => s.onError(done));
  s.connect();
  await errored;
  check(!opened && !s.isConnected(), `${what} connected`);
  s.disconnect();
}

const run = scenarios[mode];
if (!run) fail(`no mode ${mode}: ${Object.keys(scenarios).join(", ")}`);
await run();
console.log(`${mode} passed`);
process.exit(0);
