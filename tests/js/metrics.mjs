// Traffic the metrics test counts: one phoenix.js client connects with an access token,
// joins `room:lobby`, posts one room message, leaves and disconnects. Run by
// tests/api/metrics.rs; exits non-zero on the first failure. Every wait has a deadline.
//
//   node metrics.mjs ws://127.0.0.1:PORT/socket TOKEN
import { Socket } from "phoenix";
import WebSocket from "ws";

const [url, token] = process.argv.slice(2);
const DEADLINE_MS = 5000;

function fail(message) {
  console.error(`FAIL ${message}`);
  process.exit(1);
}

/** The reply to `push` ("ok", "error") within the deadline. */
function reply(push, what) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`timed out waiting for ${what}`), DEADLINE_MS);
    push
      .receive("ok", (response) => {
        clearTimeout(timer);
        resolve({ status: "ok", response });
      })
      .receive("error", (response) => {
        clearTimeout(timer);
        resolve({ status: "error", response });
      })
      .receive("timeout", () => fail(`${what}: push timed out`));
  });
}

// No reconnects: a second connection would count twice.
const socket = new Socket(url, {
  transport: WebSocket,
  authToken: token,
  reconnectAfterMs: () => 60_000,
});
socket.onError((e) => fail(`socket error ${e?.message ?? e}`));
socket.connect();

const channel = socket.channel("room:lobby", {});
const joined = await reply(channel.join(), "the join");
if (joined.status !== "ok") fail(`join refused: ${JSON.stringify(joined.response)}`);

const received = new Promise((resolve) => {
  const timer = setTimeout(() => fail("timed out waiting for the broadcast"), DEADLINE_MS);
  channel.on("message:new", (message) => {
    clearTimeout(timer);
    resolve(message);
  });
});
const posted = await reply(channel.push("message:new", { body: "counted" }), "the post");
if (posted.status !== "ok") fail(`post refused: ${JSON.stringify(posted.response)}`);
const message = await received;
if (message.body !== "counted") fail(`broadcast: ${JSON.stringify(message)}`);

const left = await reply(channel.leave(), "the leave");
if (left.status !== "ok") fail(`leave: ${JSON.stringify(left)}`);
await new Promise((resolve) => socket.disconnect(resolve, 1000, "done"));
console.log("ok connected, joined room:lobby, posted, got the broadcast, left");
process.exit(0);
