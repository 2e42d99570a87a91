// The room view: join `room:<name>`, a live presence list (one entry per user, with the
// number of devices they are on) and the room's messages.

import { Presence } from "phoenix";
import { byTestId, clock, enableForm, h, nearBottom, replaceChildren, showError, stickToBottom } from "./dom.js";

/** Room names whose topic another channel serves (`room:chat` is private messages). */
const RESERVED = new Set(["chat"]);

/** Longest topic the server takes by default, in bytes (`room:` and the name). */
const MAX_TOPIC_BYTES = 255;

/** Longest message body the server accepts, in characters (Unicode code points). */
const MAX_BODY = 4000;

/** The room view inside `root`; `ctx` has `realtime`, `api`, `me` and `names`. */
export class RoomView {
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.channel = null;
    this.presence = null;
    this.name = null;
    this.el = {
      form: byTestId("room-join-form", root),
      nameInput: byTestId("room-name", root),
      title: byTestId("room-title", root),
      presence: byTestId("presence-list", root),
      messages: byTestId("room-messages", root),
      sendForm: byTestId("room-send-form", root),
      input: byTestId("room-input", root),
      error: byTestId("room-error", root),
    };
    this.el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.join(this.el.nameInput.value);
    });
    this.el.sendForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  /** Leaves the current room (if any) and joins `room:<name>`. */
  join(rawName) {
    const name = rawName.trim();
    showError(this.el.error, "");
    if (!name) return showError(this.el.error, "Give the room a name");
    if (RESERVED.has(name)) return showError(this.el.error, `"${name}" is reserved; pick another name`);
    // The server closes the whole socket for a longer topic (`socket.max_topic_bytes`).
    if (new TextEncoder().encode(`room:${name}`).length > MAX_TOPIC_BYTES) {
      return showError(this.el.error, "That room name is too long");
    }
    this.leave();
    this.name = name;
    sessionStorage.setItem("fawkes.room", name);
    this.el.title.textContent = `#${name}`;
    this.el.title.dataset.state = "joining";
    replaceChildren(this.el.messages);
    const channel = this.ctx.realtime.channel(`room:${name}`, {});
    this.channel = channel;
    this.presence = new Presence(channel);
    this.presence.onSync(() => this.renderPresence());
    channel.on("message:new", ({ user_id: userId, body }) => this.addMessage(userId, body));
    channel
      .join()
      .receive("ok", () => {
        if (this.channel !== channel) return;
        this.el.title.dataset.state = "joined";
        this.el.sendForm.hidden = false;
        enableForm(this.el.sendForm, true);
      })
      .receive("error", (reply) => {
        // Refused (a join or a rejoin after a reconnect): stop trying, say why.
        if (this.channel !== channel) return;
        channel.leave();
        this.channel = null;
        this.presence = null;
        this.el.title.dataset.state = "error";
        enableForm(this.el.sendForm, false);
        showError(this.el.error, `Could not join #${name}: ${describe(reply)}`);
      })
      .receive("timeout", () => showError(this.el.error, `Joining #${name} is taking long; still trying`));
    channel.onError(() => {
      if (this.channel === channel) this.el.title.dataset.state = "rejoining";
    });
  }

  leave() {
    if (this.channel) this.channel.leave();
    this.channel = null;
    this.presence = null;
    this.name = null;
    this.el.sendForm.hidden = true;
    replaceChildren(this.el.presence);
  }

  /** One entry per user: the name, and how many devices (joins) they are here with. */
  renderPresence() {
    const people = this.presence.list((id, { metas }) => {
      const name = metas[0]?.name ?? `user ${id}`;
      this.ctx.names.set(Number(id), name);
      const status = metas.map((m) => m.status).find(Boolean);
      return { id, name, devices: metas.length, status };
    });
    people.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    replaceChildren(
      this.el.presence,
      people.map(({ id, name, devices, status }) =>
        h(
          "li",
          { "data-testid": "presence-item", "data-user-id": id, "data-devices": devices, "data-name": name },
          h("span", { class: "dot" }),
          h("span", { class: "who" }, name, Number(id) === this.ctx.me.id ? " (you)" : ""),
          status ? h("span", { class: "status" }, status) : null,
          h(
            "span",
            { class: "devices", "data-testid": "presence-devices", title: "devices online" },
            devices === 1 ? "1 device" : `${devices} devices`,
          ),
        ),
      ),
    );
  }

  addMessage(userId, body) {
    const list = this.el.messages;
    const wasNear = nearBottom(list);
    const mine = userId === this.ctx.me.id;
    list.append(
      h(
        "li",
        { "data-testid": "room-message", "data-user-id": userId, class: mine ? "mine" : null },
        h("span", { class: "time" }, clock()),
        h("span", { class: "who" }, this.ctx.names.get(userId) ?? `user ${userId}`),
        h("span", { class: "body" }, body),
      ),
    );
    stickToBottom(list, wasNear);
  }

  send() {
    const body = this.el.input.value.trim();
    showError(this.el.error, "");
    if (!this.channel) return showError(this.el.error, "Join a room first");
    if (!body) return;
    if ([...body].length > MAX_BODY) return showError(this.el.error, `A message is at most ${MAX_BODY} characters`);
    this.channel
      .push("message:new", { body })
      .receive("ok", () => {
        if (this.el.input.value.trim() === body) this.el.input.value = "";
      })
      .receive("error", (reply) => showError(this.el.error, `Not sent: ${describe(reply)}`))
      .receive("timeout", () => showError(this.el.error, "Not sent: no answer from the server (reconnecting?)"));
  }
}

/** A readable reason from a channel error reply. */
export function describe(reply = {}) {
  if (reply.errors) {
    return Object.entries(reply.errors)
      .map(([field, problems]) => `${field} ${[].concat(problems).join(", ")}`)
      .join("; ");
  }
  return reply.reason || "refused";
}
