// The app's channels over LongPoll with real access tokens (modes `app` and `app-cap` of
// longpoll.mjs, run by tests/api/longpoll.rs). Tokens travel as phoenix.js `authToken`, which
// LongPoll sends in the X-Phoenix-AuthToken header.
import {
  DEADLINE_MS,
  check,
  converge,
  deepEqual,
  join,
  json,
  openOverLongPoll,
  presence,
  receive,
  socket,
  until,
  waitFor,
  wsSocket,
} from "./lp-common.mjs";

/** How long a session may take to end once its client stops polling (1.5 windows and slack). */
const SESSION_END_MS = 10000;

/** Presence as the room shows it: one entry per user, one name per device. */
const byName = (_id, { metas }) => metas.map((m) => m.name).join("+");

/** The HTTP base of a ws://…/socket URL. */
const httpBase = (url) => url.replace(/^ws/, "http").replace(/\/socket$/, "");

/** The scenarios of mode `app`: TOKEN_A TOKEN_A2 (Ann's second login) TOKEN_B TOKEN_C CONVERSATION_ID A_ID B_ID. */
export function appScenarios(url, args) {
  const [tokenA, tokenA2, tokenB, tokenC, conversationId, aId, bId] = args;
  const lp = (token, opts = {}) => socket(url, { authToken: token, ...opts });
  const ws = (token, opts = {}) => wsSocket(url, { authToken: token, ...opts });

  return {
    async "presence and room messages over LongPoll beside WebSocket, one entry per user and a meta per device"() {
      const topic = "room:lp-lobby";
      const ann = lp(tokenA);
      const bobLaptop = ws(tokenB);
      const bobPhone = lp(tokenB);
      const annRoom = ann.channel(topic, {});
      const laptopRoom = bobLaptop.channel(topic, {});
      const phoneRoom = bobPhone.channel(topic, {});
      const views = { ann: presence(annRoom, byName), laptop: presence(laptopRoom, byName), phone: presence(phoneRoom, byName) };
      await join(annRoom, "ann joins (LongPoll)");
      await openOverLongPoll(ann, "ann's socket");
      await join(laptopRoom, "bob's laptop joins (WebSocket)");
      await converge({ ann: views.ann, laptop: views.laptop }, ["Ann", "Bob"], "ann and bob");
      await join(phoneRoom, "bob's phone joins (LongPoll)");
      await converge(views, ["Ann", "Bob+Bob"], "bob's second device");

      const atLaptop = waitFor("the room message at bob's laptop", (done) => laptopRoom.on("message:new", done));
      const atPhone = waitFor("the room message at bob's phone", (done) => phoneRoom.on("message:new", done));
      const sent = await receive(annRoom.push("message:new", { body: "hello over LongPoll" }), "ann's room message");
      check(sent.status === "ok", `room message: ${json(sent)}`);
      for (const got of [await atLaptop, await atPhone]) {
        check(deepEqual(got, { user_id: Number(aId), body: "hello over LongPoll" }), `room message: ${json(got)}`);
      }
      const invalid = await receive(annRoom.push("message:new", { body: "  " }), "an invalid room message");
      check(invalid.status === "error" && invalid.response.reason === "invalid", `invalid: ${json(invalid)}`);

      await receive(phoneRoom.leave(), "bob's phone leaves");
      await converge({ ann: views.ann, laptop: views.laptop }, ["Ann", "Bob"], "bob's phone left");
      await receive(annRoom.leave(), "ann leaves");
      await converge({ laptop: views.laptop }, ["Bob"], "ann left");
      for (const s of [ann, bobLaptop, bobPhone]) s.disconnect();
    },

    async "a conversation over LongPoll recovers what it missed across a reconnect and gets the rest live"() {
      const api = `${httpBase(url)}/api/v1/conversations/${conversationId}/messages`;
      const post = async (content) => {
        const response = await fetch(api, {
          method: "POST",
          headers: { authorization: `Bearer ${tokenA}`, "content-type": "application/json" },
          body: JSON.stringify({ content }),
        });
        check(response.status === 201, `post ${content}: ${response.status}`);
      };
      // Run before the room:chat scenario, which adds to this conversation.
      const seen = new Map();
      let lastSeen = 0;
      const keep = (message) => {
        seen.set(message.id, message.content);
        lastSeen = Math.max(lastSeen, message.id);
      };
      const contents = () => [...seen.entries()].sort((x, y) => x[0] - y[0]).map(([, c]) => c);
      const has = (expected, step) => until(step, () => deepEqual(contents(), expected), () => json(contents()));

      const bob = lp(tokenB);
      const channel = bob.channel(`conversation:${conversationId}`, () => ({ last_seen_id: lastSeen }));
      channel.on("message:new", ({ message }) => keep(message));
      let joins = 0;
      await waitFor("the first join", (done) =>
        channel
          .join()
          .receive("ok", ({ messages = [] }) => {
            joins += 1;
            messages.forEach(keep);
            done();
          })
          .receive("error", (e) => check(false, `conversation join: ${json(e)}`)),
      );
      await openOverLongPoll(bob, "bob's socket");
      await has(["m0"], "history in the join reply");
      await post("live1");
      await has(["m0", "live1"], "a live message");

      bob.disconnect(); // its session lingers until it times out; nothing reads it
      await post("away1");
      await post("away2");
      bob.connect(); // a new session; phoenix.js rejoins with the params closure: the new last_seen_id
      await has(["m0", "live1", "away1", "away2"], "recovered after the rejoin");
      check(joins === 2, `joined ${joins} times`);
      await post("live2");
      await has(["m0", "live1", "away1", "away2", "live2"], "live after the rejoin");

      const outsider = lp(tokenC);
      const refused = await receive(outsider.channel(`conversation:${conversationId}`, {}).join(), "outsider join");
      check(refused.status === "error" && refused.response.reason === "unauthorized", `outsider: ${json(refused)}`);
      outsider.disconnect();
      bob.disconnect();
    },

    async "room:chat over LongPoll: every device of the recipient gets each message"() {
      const conv = Number(conversationId);
      const start = (s) => {
        const channel = s.channel("room:chat", {});
        const inbox = [];
        channel.on("receive_msg", ({ message }) => inbox.push(message));
        return { s, channel, inbox };
      };
      const ann = start(lp(tokenA));
      const phone = start(lp(tokenB));
      const laptop = start(ws(tokenB));
      for (const [name, client] of Object.entries({ ann, phone, laptop })) await join(client.channel, `${name} joins room:chat`);
      const arrives = async (client, id, step) => {
        await until(step, () => client.inbox.some((m) => m.id === id), () => json(client.inbox));
        return client.inbox.find((m) => m.id === id);
      };

      const sent = await receive(ann.channel.push("send_msg", { user: Number(bId), conv, message: "hello from LongPoll" }), "ann sends");
      check(sent.status === "ok" && sent.response.delivered === 2, `send: ${json(sent)}`);
      const { message } = sent.response;
      check(message.content === "hello from LongPoll" && message.sender_id === Number(aId), `message: ${json(message)}`);
      for (const [name, device] of Object.entries({ phone, laptop })) {
        const got = await arrives(device, message.id, `bob's ${name} receives`);
        check(deepEqual(got, message), `${name} got ${json(got)}`);
      }
      const answer = await receive(phone.channel.push("send_msg", { user: Number(aId), conv, message: "hi ann" }), "bob answers");
      check(answer.status === "ok" && answer.response.delivered === 1, `answer: ${json(answer)}`);
      await arrives(ann, answer.response.message.id, "ann receives the answer (LongPoll)");
      const wrong = await receive(ann.channel.push("send_msg", { user: Number(aId), conv, message: "to myself" }), "a wrong recipient");
      check(wrong.status === "error" && wrong.response.reason === "wrong_recipient", `wrong: ${json(wrong)}`);
      check(ann.channel.state === "joined", `ann's channel is ${ann.channel.state}`);
      for (const { s } of [ann, phone, laptop]) s.disconnect();
    },

    async "an access token as a connect param works over LongPoll beside the session token"() {
      // LongPoll puts its session token in the same query as the params (`token` twice).
      const s = socket(url, { params: { token: tokenB } });
      const channel = s.channel("room:lp-param", {});
      await join(channel, "join with the token param");
      await openOverLongPoll(s, "the socket");
      const reply = await receive(channel.push("ping", { n: 7 }), "ping");
      check(deepEqual(reply.response, { n: 7 }), `ping: ${json(reply)}`);
      s.disconnect();
    },

    async "logout ends the LongPoll sessions of that login, and their reconnect is refused"() {
      const topic = "room:lp-logout";
      const stays = lp(tokenA);
      const leaves = lp(tokenA2, { expectErrors: true });
      const staysRoom = stays.channel(topic, {});
      const leavesRoom = leaves.channel(topic, {});
      const view = presence(staysRoom, byName);
      await join(staysRoom, "the first login joins");
      await join(leavesRoom, "the second login joins");
      await converge({ stays: view }, ["Ann+Ann"], "two devices of ann");

      const response = await fetch(`${httpBase(url)}/api/v1/sessions`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${tokenA2}` },
      });
      check(response.status === 204, `logout: ${response.status}`);
      await converge({ stays: view }, ["Ann"], "the logged-out device left");
      await until("the logged-out client told its session is gone", () => leaves.errors.includes(410), () => json(leaves.errors));
      await until("its reconnect refused", () => leaves.errors.includes(403), () => json(leaves.errors));
      check(!leaves.isConnected() && leavesRoom.state !== "joined", `logged out: ${leaves.connectionState()}, ${leavesRoom.state}`);
      const reply = await receive(staysRoom.push("ping", { still: "here" }), "the other login");
      check(deepEqual(reply.response, { still: "here" }), "the other login lives on");
      stays.disconnect();
      leaves.disconnect();
    },

    async "a bad token gets 403 over LongPoll and never joins"() {
      const s = lp("forged", { expectErrors: true });
      const channel = s.channel("room:lp-forged", {});
      channel.join().receive("ok", () => check(false, "a forged token joined"));
      await until("a 403", () => s.errors.includes(403), () => json(s.errors));
      check(!s.isConnected(), `not connected: ${s.connectionState()}`);
      check(channel.state !== "joined", `channel ${channel.state}`);
      s.disconnect();
    },
  };
}

/** The scenarios of mode `app-cap` (max_sockets_per_id 2): TOKEN. */
export function capScenarios(url, args) {
  const [token] = args;
  return {
    async "the per-id socket cap counts LongPoll sessions and a timed-out session gives its place back"() {
      const first = socket(url, { authToken: token });
      const second = wsSocket(url, { authToken: token });
      await join(first.channel("room:cap", {}), "the first socket (LongPoll)");
      await join(second.channel("room:cap", {}), "the second socket (WebSocket)");
      await openOverLongPoll(first, "the first socket");

      const third = socket(url, { authToken: token, expectErrors: true, reconnectAfterMs: () => 100 });
      const thirdRoom = third.channel("room:cap", {});
      let thirdJoined = false;
      thirdRoom.join().receive("ok", () => (thirdJoined = true));
      await until("the third socket (LongPoll) refused", () => third.errors.includes(403), () => json(third.errors));
      check(!third.isConnected() && !thirdJoined, "the third socket is not in");
      const fourth = wsSocket(url, { authToken: token, expectErrors: true, reconnectAfterMs: () => 60000 });
      await until("the fourth socket (WebSocket) refused", () => fourth.errors.length > 0, () => "no error", DEADLINE_MS);
      check(!fourth.isConnected(), "the fourth socket is not in");
      fourth.disconnect();

      // No leave, no more polls: the first session ends with its window, and the third
      // socket's next try takes its place.
      first.disconnect();
      await until("the third socket in", () => thirdJoined, () => json(third.errors), SESSION_END_MS);
      await openOverLongPoll(third, "the third socket");
      const reply = await receive(thirdRoom.push("ping", { n: 3 }), "ping on the third socket");
      check(deepEqual(reply.response, { n: 3 }), `ping: ${json(reply)}`);
      second.disconnect();
      third.disconnect();
    },
  };
}
