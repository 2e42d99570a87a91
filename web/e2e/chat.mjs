// The browser client end to end, in headless Chromium (Debian's, at /usr/bin/chromium):
// two people register, meet in a room, chat there and privately, survive a reload, a cut
// connection and a network that blocks WebSockets (Bob's browser goes through an HTTP proxy
// that starts refusing them), and go back to WebSocket when it lets them through again.
//
//   node e2e/chat.mjs http://127.0.0.1:PORT ARTIFACT_DIR
//
// Each step prints `ok <step>` and leaves a screenshot per page in ARTIFACT_DIR; a failing
// step prints what it waited for, the pages' console, and leaves FAILED-… screenshots.
// The server must serve the built client at `/` and have LongPoll on.

import { chromium } from "playwright-core";
import {
  DEADLINE_MS,
  Scenario,
  connectedOver,
  seeText,
  seesPresence,
  sendPrivate,
  sendRoom,
  tid,
  until,
} from "./harness.mjs";
import { startProxy } from "./proxy.mjs";

const [baseUrl, artifactDir] = process.argv.slice(2);
if (!baseUrl || !artifactDir) {
  console.error("usage: node e2e/chat.mjs http://127.0.0.1:PORT ARTIFACT_DIR");
  process.exit(2);
}

/**
 * For changes of transport: phoenix.js falls back to LongPoll within longPollFallbackMs, and
 * the page tries the WebSocket again 10 s after LongPoll took over (src/realtime.js).
 */
const FALLBACK_DEADLINE_MS = 30_000;
const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const room = `e2e-${run}`;
const password = "correct horse battery staple";
const people = {
  ann: { name: "Ann", subname: "Lovelace", job: "Engineer", email: `ann-${run}@example.com` },
  bob: { name: "Bob", subname: "Babbage", job: "Inventor", email: `bob-${run}@example.com` },
};

const scenario = new Scenario(artifactDir);
await scenario.init();
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true });

// Ann's network can be cut (WebSocket and LongPoll both) and restored; every WebSocket of
// hers goes through the route so that it can be closed from here.
let annCut = false;
const annSockets = new Set();
const annContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
await annContext.routeWebSocket(/\/socket\/websocket/, (ws) => {
  if (annCut) return ws.close({ code: 4000, reason: "network cut by the test" });
  const server = ws.connectToServer();
  const both = { ws, server };
  annSockets.add(both);
  ws.onClose(() => annSockets.delete(both));
});
await annContext.route(/\/socket\/longpoll/, (route) => (annCut ? route.abort("internetdisconnected") : route.continue()));
// Bob reaches the server only through a proxy, which can start refusing WebSockets. Chromium
// does not proxy loopback addresses unless told to: "<-loopback>" takes them off its bypass list.
const bobProxy = await startProxy(baseUrl);
const bobContext = await browser.newContext({
  viewport: { width: 1280, height: 900 },
  proxy: { server: bobProxy.server, bypass: "<-loopback>" },
});
// Every click, fill and navigation has the same deadline as the waits.
for (const context of [annContext, bobContext]) {
  context.setDefaultTimeout(DEADLINE_MS);
  context.setDefaultNavigationTimeout(DEADLINE_MS);
}

const ann = await annContext.newPage();
const bob = await bobContext.newPage();
scenario.watch("ann", ann);
scenario.watch("bob", bob);

/** Registers `person` on `page` (which logs in) and waits for the socket. */
async function register(page, person) {
  await page.goto(baseUrl);
  await page.fill(tid("register-name"), person.name);
  await page.fill(tid("register-subname"), person.subname);
  await page.fill(tid("register-job"), person.job);
  await page.fill(tid("register-email"), person.email);
  await page.fill(tid("register-password"), password);
  await page.click(tid("register-submit"));
  await until(
    page,
    async () => `${person.name} is logged in after registering (error: "${await page.locator(tid("register-error")).innerText()}")`,
    (name) => document.querySelector('[data-testid="me-name"]').textContent.startsWith(name),
    person.name,
  );
  await connectedOver(page, person.name, "WebSocket");
  person.id = await page.locator(tid("me-name")).getAttribute("data-user-id");
}

/** Joins the scenario's room on `page`. */
async function joinRoom(page) {
  await page.fill(tid("room-name"), room);
  await page.click(tid("room-join"));
  await until(page, `joined #${room}`, () => document.querySelector('[data-testid="room-title"]').dataset.state === "joined");
}

/** Opens the conversation with `person` on `page` (refreshing the people list first). */
async function openConversationWith(page, person) {
  const name = person.name;
  await page.click(tid("users-refresh"));
  const item = page.locator(`${tid("user-item")}[data-user-id="${person.id}"]`);
  await item.waitFor({ timeout: DEADLINE_MS });
  await item.click();
  await until(page, `the conversation with ${name} is open`, () => document.querySelector('[data-testid="conv-title"]').dataset.state === "joined");
}

try {
  await scenario.step("both register and are connected over WebSocket", async () => {
    await register(ann, people.ann);
    await register(bob, people.bob);
    const { requests, tunnels } = bobProxy.counts;
    if (!requests || !tunnels) throw new Error(`Bob's traffic does not go through his proxy (${requests} requests, ${tunnels} tunnels)`);
  });

  await scenario.step("a bad login and a taken e-mail show the API's errors", async () => {
    const page = await annContext.newPage();
    scenario.watch("ann-login", page);
    try {
      await page.goto(baseUrl);
      // A new tab has a sessionStorage of its own: not logged in.
      await page.fill(tid("login-email"), people.ann.email);
      await page.fill(tid("login-password"), "not the password at all");
      await page.click(tid("login-submit"));
      await seeText(page, "the login error is shown", tid("login-error"), "Log in failed: Invalid e-mail or password");
      await page.fill(tid("register-name"), "Another");
      await page.fill(tid("register-subname"), "Ann");
      await page.fill(tid("register-job"), "Impostor");
      await page.fill(tid("register-email"), people.ann.email);
      await page.fill(tid("register-password"), password);
      await page.click(tid("register-submit"));
      await seeText(page, "the registration error is shown", tid("register-error"), "Registration failed: Email has already been taken");
      await scenario.screenshots("02-bad-login");
    } finally {
      scenario.forget("ann-login");
      await page.close();
    }
  });

  await scenario.step("both join a room and see each other in presence", async () => {
    await joinRoom(ann);
    await joinRoom(bob);
    for (const [who, page] of [["Ann", ann], ["Bob", bob]]) {
      await seesPresence(page, who, "Ann", 1);
      await seesPresence(page, who, "Bob", 1);
    }
  });

  await scenario.step("a second device of Ann's counts as one person on two devices", async () => {
    const second = await annContext.newPage();
    scenario.watch("ann-2", second);
    await second.goto(baseUrl);
    await second.fill(tid("login-email"), people.ann.email);
    await second.fill(tid("login-password"), password);
    await second.click(tid("login-submit"));
    await connectedOver(second, "Ann's second tab", "WebSocket");
    await joinRoom(second);
    await seesPresence(bob, "Bob", "Ann", 2);
    await until(bob, "Bob's list has one entry for Ann", () => document.querySelectorAll('[data-testid="presence-item"][data-name="Ann"]').length === 1);
    await scenario.screenshots("04-two-devices");
    scenario.forget("ann-2");
    await second.close();
    await seesPresence(bob, "Bob", "Ann", 1);
  });

  await scenario.step("room messages go both ways", async () => {
    await sendRoom(ann, "hello room, Ann here");
    await seeText(bob, "Bob gets Ann's room message", tid("room-message"), "Annhello room, Ann here");
    await sendRoom(bob, "hi Ann, Bob here");
    await seeText(ann, "Ann gets Bob's room message", tid("room-message"), "Bobhi Ann, Bob here");
  });

  await scenario.step("a private conversation goes both ways", async () => {
    await openConversationWith(ann, people.bob);
    await sendPrivate(ann, "psst, Bob: a private word");
    await seeText(ann, "Ann sees her private message", tid("conv-message"), "psst, Bob: a private word");
    // Bob has not opened it: an unread mark on Ann, then the message once he does.
    await until(
      bob,
      "Bob sees an unread mark on Ann",
      (id) => document.querySelector(`[data-testid="user-item"][data-user-id="${id}"] [data-testid="unread"]`)?.textContent === "1",
      people.ann.id,
    );
    await openConversationWith(bob, people.ann);
    await seeText(bob, "Bob reads Ann's private message", tid("conv-message"), "psst, Bob: a private word");
    await sendPrivate(bob, "got it, Ann");
    await seeText(ann, "Ann gets Bob's answer live", tid("conv-message"), "got it, Ann");
  });

  await scenario.step("Bob reloads, stays logged in and pages through the history", async () => {
    // 25 more messages from Ann over the REST API: more than one page (20).
    const token = await ann.evaluate(() => sessionStorage.getItem("fawkes.token"));
    const conversationId = await ann.locator(tid("conv-title")).getAttribute("data-conversation-id");
    for (let i = 1; i <= 25; i += 1) {
      const response = await fetch(`${baseUrl}/api/v1/conversations/${conversationId}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ content: `history ${i}` }),
      });
      if (response.status !== 201) throw new Error(`posting history ${i}: ${response.status} ${await response.text()}`);
    }
    await seeText(bob, "Bob gets the last of them live", tid("conv-message"), "history 25");
    await bob.reload();
    await connectedOver(bob, "Bob after the reload", "WebSocket");
    await until(bob, "Bob's conversation with Ann is back after the reload", () => document.querySelector('[data-testid="conv-title"]').dataset.state === "joined");
    await seeText(bob, "the newest page is shown", tid("conv-message"), "history 25");
    const shown = await bob.locator(tid("conv-message")).count();
    if (shown !== 20) throw new Error(`the first page shows ${shown} messages, expected 20`);
    await bob.click(tid("conv-load-older"));
    await seeText(bob, "older messages come with 'load older'", tid("conv-message"), "psst, Bob: a private word");
    await until(bob, "all 27 messages are shown, once each", () => document.querySelectorAll('[data-testid="conv-message"]').length === 27);
    await until(bob, "'load older' is gone at the start", () => document.querySelector('[data-testid="conv-load-older"]').hidden);
    await seesPresence(bob, "Bob", "Ann", 1);
    await seesPresence(ann, "Ann", "Bob", 1);
  });

  await scenario.step("Ann's connection is cut; she recovers what she missed", async () => {
    annCut = true;
    // Both ends, as a dead network would: the server ends Ann's socket (and her presence).
    for (const { ws, server } of annSockets) {
      await server.close({ code: 4000, reason: "network cut by the test" });
      await ws.close({ code: 4000, reason: "network cut by the test" });
    }
    await until(ann, "Ann shows that she is reconnecting", () => document.querySelector('[data-testid="connection"]').dataset.state === "reconnecting");
    await sendPrivate(bob, "while you were away 1");
    await sendPrivate(bob, "while you were away 2");
    await seeText(bob, "Bob's messages are stored", tid("conv-message"), "while you were away 2");
    const before = await ann.locator(tid("conv-message")).count();
    annCut = false;
    // Over WebSocket in the end: LongPoll may take over while the network is cut, and then
    // the page goes back to the WebSocket, which had worked.
    await connectedOver(ann, "Ann, connected again", "WebSocket", FALLBACK_DEADLINE_MS);
    await seeText(ann, "Ann recovered the first missed message", tid("conv-message"), "while you were away 1");
    await seeText(ann, "Ann recovered the second", tid("conv-message"), "while you were away 2");
    await until(ann, "the rejoin reply brought both (recovered: 2)", () => document.querySelector('[data-testid="conv-status"]').dataset.recovered === "2");
    const after = await ann.locator(tid("conv-message")).count();
    if (after !== before + 2) throw new Error(`Ann shows ${after} messages, expected ${before + 2}`);
  });

  await scenario.step("Bob's network blocks WebSockets: he falls back to LongPoll and still chats", async () => {
    const refusedBefore = bobProxy.counts.refused;
    // Bob's proxy cuts his WebSocket and refuses new ones: phoenix.js reconnects, the
    // WebSocket fails before it opens, and LongPoll takes over.
    bobProxy.block();
    await connectedOver(bob, "Bob behind the blocking network", "LongPoll", FALLBACK_DEADLINE_MS);
    await seeText(bob, "the page says LongPoll", tid("conn-transport"), "LongPoll");
    if (bobProxy.counts.refused === refusedBefore) throw new Error("Bob's proxy refused no WebSocket");
    await until(bob, "Bob is back in the room", () => document.querySelector('[data-testid="room-title"]').dataset.state === "joined");
    await until(bob, "Bob's conversation is back", () => document.querySelector('[data-testid="conv-title"]').dataset.state === "joined");
    await seesPresence(ann, "Ann", "Bob", 1);
    await seesPresence(bob, "Bob", "Ann", 1);
    await sendRoom(ann, "room message to a LongPoll Bob");
    await seeText(bob, "Bob gets a room message over LongPoll", tid("room-message"), "room message to a LongPoll Bob");
    await sendRoom(bob, "room message from LongPoll");
    await seeText(ann, "Ann gets Bob's room message from LongPoll", tid("room-message"), "room message from LongPoll");
    await sendPrivate(bob, "private from LongPoll");
    await seeText(ann, "Ann gets Bob's private message from LongPoll", tid("conv-message"), "private from LongPoll");
    await sendPrivate(ann, "private to LongPoll");
    await seeText(bob, "Bob gets Ann's private message over LongPoll", tid("conv-message"), "private to LongPoll");
    await seeText(bob, "the page still says LongPoll", tid("conn-transport"), "LongPoll");
  });

  await scenario.step("WebSockets get through again: Bob goes back to WebSocket", async () => {
    const tunnelsBefore = bobProxy.counts.tunnels;
    bobProxy.allow();
    await connectedOver(bob, "Bob once WebSockets get through", "WebSocket", FALLBACK_DEADLINE_MS);
    if (bobProxy.counts.tunnels === tunnelsBefore) throw new Error("Bob's WebSocket did not go through his proxy");
    await until(bob, "Bob is back in the room", () => document.querySelector('[data-testid="room-title"]').dataset.state === "joined");
    await until(bob, "Bob's conversation is back", () => document.querySelector('[data-testid="conv-title"]').dataset.state === "joined");
    await sendRoom(ann, "room message to a WebSocket Bob again");
    await seeText(bob, "Bob gets a room message over WebSocket again", tid("room-message"), "room message to a WebSocket Bob again");
    await sendPrivate(bob, "private over WebSocket again");
    await seeText(ann, "Ann gets Bob's private message", tid("conv-message"), "private over WebSocket again");
  });

  await scenario.step("Ann logs out: the log-in form again, and she leaves the room", async () => {
    await ann.click(tid("logout"));
    await seeText(ann, "Ann is told she is logged out", tid("login-error"), "You are logged out");
    await until(ann, "Ann's page is offline", () => document.querySelector('[data-testid="connection"]').dataset.state === "offline");
    await until(bob, "Bob no longer sees Ann online", () => !document.querySelector('[data-testid="presence-item"][data-name="Ann"]'));
    await seesPresence(bob, "Bob", "Bob", 1);
  });

  console.log("all steps passed");
} finally {
  await browser.close();
  bobProxy.close();
}
