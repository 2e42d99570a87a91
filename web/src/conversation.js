// Private chat: pick a user, open (or create) the conversation with them, read its history
// page by page ("load older"), and follow it live on `conversation:<id>`. After a reconnect
// the channel rejoins with the newest id we have (`last_seen_id`) and the server sends what
// was missed; messages are kept by id, so one arriving twice shows once.

import { describe } from "./room.js";
import { byTestId, clock, enableForm, h, nearBottom, replaceChildren, showError, stickToBottom } from "./dom.js";

/** Messages per history page. */
export const PAGE_SIZE = 20;

/** The longest message the server stores, in characters (Unicode code points). */
const MAX_CONTENT = 4000;

/** The people list and the conversation pane inside `root`; `ctx` as for the room view. */
export class ConversationView {
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.unread = new Map();
    this.open = null;
    // Counts openWith calls: one that a later call overtook while it waited gives up.
    this.opening = 0;
    this.el = {
      users: byTestId("user-list", root),
      refresh: byTestId("users-refresh", root),
      title: byTestId("conv-title", root),
      older: byTestId("conv-load-older", root),
      messages: byTestId("conv-messages", root),
      status: byTestId("conv-status", root),
      sendForm: byTestId("conv-send-form", root),
      input: byTestId("conv-input", root),
      error: byTestId("conv-error", root),
    };
    this.el.refresh.addEventListener("click", () => this.loadUsers());
    this.el.older.addEventListener("click", () => this.loadOlder());
    this.el.sendForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    // room:chat: our copy of every private message to us, on every device; used here for
    // the unread marks of conversations that are not open, and for sending.
    this.chat = ctx.realtime.channel("room:chat", {});
    this.chat.on("receive_msg", ({ message }) => this.received(message));
    this.chat.join().receive("error", (reply) => showError(this.el.error, `Private chat unavailable: ${describe(reply)}`));
  }

  /** Lists everyone else (every page of `GET /users`), then reopens the last conversation. */
  async loadUsers() {
    showError(this.el.error, "");
    const people = [];
    try {
      let after = null;
      for (let pages = 0; pages < 20; pages += 1) {
        const page = await this.ctx.api.users(after);
        people.push(...page.data);
        after = page.meta?.next;
        if (!after) break;
      }
    } catch (error) {
      return showError(this.el.error, `Could not list users: ${error.message}`);
    }
    for (const user of people) this.ctx.names.set(user.id, user.name);
    const others = people.filter((user) => user.id !== this.ctx.me.id);
    replaceChildren(
      this.el.users,
      others.length ? null : h("li", { class: "empty" }, "Nobody else has registered yet"),
      others.map((user) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              "data-testid": "user-item",
              "data-user-id": user.id,
              "data-name": user.name,
              onclick: () => this.openWith(user.id),
            },
            h("span", { class: "who" }, `${user.name} ${user.subname}`),
            h("span", { class: "job" }, user.job),
            h("span", { class: "badge", "data-testid": "unread", hidden: true }),
          ),
        ),
      ),
    );
    this.renderMarks();
    const peer = Number(sessionStorage.getItem("fawkes.peer"));
    if (peer && !this.open && others.some((user) => user.id === peer)) await this.openWith(peer);
  }

  /** Opens the conversation with `peerId`: its newest page, then live on its channel. */
  async openWith(peerId) {
    const ticket = ++this.opening;
    showError(this.el.error, "");
    this.close();
    let conversation;
    let page;
    try {
      conversation = await this.ctx.api.openConversation(peerId);
      if (ticket !== this.opening) return;
      page = await this.ctx.api.messages(conversation.id, { limit: PAGE_SIZE });
    } catch (error) {
      if (ticket !== this.opening) return;
      return showError(this.el.error, `Could not open the conversation: ${error.message}`);
    }
    if (ticket !== this.opening) return;
    // Whatever opened while we waited (nothing should have) is left for this one.
    this.close();
    sessionStorage.setItem("fawkes.peer", String(peerId));
    const open = {
      id: conversation.id,
      peerId,
      items: new Map(),
      hasOlder: page.meta.has_more,
      lastSeen: 0,
      joins: 0,
      recovered: 0,
      channel: null,
    };
    this.open = open;
    this.unread.delete(peerId);
    this.renderMarks();
    this.el.title.textContent = this.ctx.names.get(peerId) ?? `user ${peerId}`;
    this.el.title.dataset.conversationId = conversation.id;
    this.el.title.dataset.state = "joining";
    replaceChildren(this.el.messages);
    this.setStatus("");
    page.data.forEach((message) => this.add(message));
    this.el.messages.scrollTop = this.el.messages.scrollHeight;
    this.el.older.hidden = !open.hasOlder;
    this.el.sendForm.hidden = false;
    enableForm(this.el.sendForm, true);
    this.el.input.focus();

    // The params are read at every (re)join: the newest message we have.
    const channel = this.ctx.realtime.channel(`conversation:${open.id}`, () => ({ last_seen_id: open.lastSeen }));
    open.channel = channel;
    channel.on("message:new", ({ message }) => this.open === open && this.add(message));
    channel.onError(() => {
      if (this.open === open) this.el.title.dataset.state = "rejoining";
    });
    channel
      .join()
      .receive("ok", (reply) => this.joined(open, reply))
      .receive("error", (reply) => this.refused(open, reply));
  }

  /** The server refused to join (or rejoin) the conversation: stop trying, say why. */
  refused(open, reply) {
    // A conversation closed meanwhile has left its channel already.
    if (this.open !== open || !open.channel) return;
    open.channel.leave();
    open.channel = null;
    this.el.title.dataset.state = "error";
    enableForm(this.el.sendForm, false);
    showError(this.el.error, `Could not follow the conversation: ${describe(reply)}`);
  }

  /** A (re)join's reply carries what came after `last_seen_id`; page on if there is more. */
  async joined(open, { messages = [], has_more: hasMore = false } = {}) {
    if (this.open !== open) return;
    open.joins += 1;
    let fresh = messages.filter((m) => this.add(m)).length;
    let more = hasMore;
    try {
      while (more && this.open === open) {
        const page = await this.ctx.api.messages(open.id, { after: open.lastSeen, limit: 100 });
        fresh += page.data.filter((m) => this.add(m)).length;
        more = page.meta.has_more;
      }
    } catch (error) {
      showError(this.el.error, `Could not fetch missed messages: ${error.message}`);
    }
    if (this.open !== open) return;
    this.el.title.dataset.state = "joined";
    if (open.joins > 1) {
      open.recovered += fresh;
      this.el.status.dataset.recovered = open.recovered;
      this.setStatus(fresh ? `Reconnected: ${fresh} missed message${fresh === 1 ? "" : "s"} recovered` : "Reconnected: nothing missed");
    }
  }

  /** Shows `message` in the open conversation, in id order; false if it was there already. */
  add(message) {
    const open = this.open;
    if (!open || message.conversation_id !== open.id || open.items.has(message.id)) return false;
    const list = this.el.messages;
    const wasNear = nearBottom(list);
    const mine = message.sender_id === this.ctx.me.id;
    const item = h(
      "li",
      { "data-testid": "conv-message", "data-id": message.id, class: mine ? "mine" : null },
      h("span", { class: "time" }, clock(message.inserted_at)),
      h("span", { class: "who" }, mine ? "you" : (this.ctx.names.get(message.sender_id) ?? `user ${message.sender_id}`)),
      h("span", { class: "body" }, message.content),
    );
    const next = [...open.items.keys()].filter((id) => id > message.id).sort((a, b) => a - b)[0];
    list.insertBefore(item, next === undefined ? null : open.items.get(next));
    open.items.set(message.id, item);
    open.lastSeen = Math.max(open.lastSeen, message.id);
    if (next === undefined) stickToBottom(list, wasNear || mine);
    return true;
  }

  /** The page before the oldest message shown, keeping the reader's place. */
  async loadOlder() {
    const open = this.open;
    if (!open) return;
    const oldest = Math.min(...open.items.keys());
    this.el.older.disabled = true;
    try {
      const page = await this.ctx.api.messages(open.id, { before: oldest, limit: PAGE_SIZE });
      if (this.open !== open) return;
      const list = this.el.messages;
      const fromBottom = list.scrollHeight - list.scrollTop;
      page.data.forEach((message) => this.add(message));
      list.scrollTop = list.scrollHeight - fromBottom;
      open.hasOlder = page.meta.has_more;
      this.el.older.hidden = !open.hasOlder;
    } catch (error) {
      showError(this.el.error, `Could not load older messages: ${error.message}`);
    } finally {
      this.el.older.disabled = false;
    }
  }

  send() {
    const open = this.open;
    const content = this.el.input.value.trim();
    showError(this.el.error, "");
    if (!open || !content) return;
    if ([...content].length > MAX_CONTENT) return showError(this.el.error, `A message is at most ${MAX_CONTENT} characters`);
    this.chat
      .push("send_msg", { user: open.peerId, conv: open.id, message: content })
      .receive("ok", ({ message }) => {
        if (this.el.input.value.trim() === content) this.el.input.value = "";
        if (this.open === open) this.add(message);
      })
      .receive("error", (reply) => showError(this.el.error, `Not sent: ${describe(reply)}`))
      .receive("timeout", () => showError(this.el.error, "Not sent: no answer from the server (reconnecting?)"));
  }

  /** A private message to us (`room:chat`): shown if its conversation is open, else marked. */
  received(message) {
    if (this.open && message.conversation_id === this.open.id) {
      this.add(message);
      return;
    }
    this.unread.set(message.sender_id, (this.unread.get(message.sender_id) ?? 0) + 1);
    this.renderMarks();
  }

  renderMarks() {
    for (const button of this.el.users.querySelectorAll('[data-testid="user-item"]')) {
      const id = Number(button.dataset.userId);
      const count = this.unread.get(id) ?? 0;
      const badge = button.querySelector('[data-testid="unread"]');
      badge.textContent = count ? String(count) : "";
      badge.hidden = !count;
      button.classList.toggle("active", this.open?.peerId === id);
    }
  }

  setStatus(text) {
    this.el.status.textContent = text;
    this.el.status.hidden = !text;
  }

  close() {
    if (this.open?.channel) this.open.channel.leave();
    this.open = null;
    this.el.sendForm.hidden = true;
    this.el.older.hidden = true;
  }
}
