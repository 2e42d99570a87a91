// The socket: the official phoenix.js client on `/socket`, authenticated with short-lived
// socket tokens, falling back to LongPoll when WebSockets do not get through.

import { LongPoll, Socket } from "phoenix";

/** How long a WebSocket gets to prove itself before phoenix.js falls back to LongPoll. */
export const LONGPOLL_FALLBACK_MS = 2500;

/** Socket tokens live 60 s (`socket.token_ttl_secs`); keep one younger than this at hand. */
const TOKEN_REFRESH_MS = 40_000;

/**
 * Connects to `/socket` once a first socket token is fetched, and tells `onState` the
 * connection state (`connecting`, `connected`, `reconnecting`, `offline`) and the transport
 * in use (`WebSocket` or `LongPoll`). `onExpired(message)` is called once if the session
 * itself is refused (logged out elsewhere, expired): no socket token can be had any more.
 */
export class Realtime {
  constructor(api, onState, onExpired) {
    this.api = api;
    this.onState = onState;
    this.onExpired = onExpired;
    this.token = null;
    this.tokenAt = 0;
    this.refreshing = null;
    this.closed = false;
    this.socket = new Socket("/socket", {
      // Called at every (re)connect: the freshest token we have.
      authToken: () => {
        if (Date.now() - this.tokenAt > TOKEN_REFRESH_MS) this.refreshToken();
        return this.token;
      },
      longPollFallbackMs: LONGPOLL_FALLBACK_MS,
    });
    this.socket.onOpen(() => this.report("connected"));
    this.socket.onError(() => {
      // A refused token (expired while the tab slept) is fixed before the next attempt.
      this.refreshToken();
      this.report("reconnecting");
    });
    this.socket.onClose(() => this.report("reconnecting"));
    this.timer = null;
  }

  /** Fetches a socket token, then connects. */
  async connect() {
    this.report("connecting");
    await this.refreshToken();
    if (this.closed) return;
    this.timer = setInterval(() => this.refreshToken(), TOKEN_REFRESH_MS);
    this.socket.connect();
  }

  /** A new socket token (one request at a time); errors are reported, not thrown. */
  refreshToken() {
    if (this.closed) return Promise.resolve();
    if (!this.refreshing) {
      this.refreshing = this.api
        .socketToken()
        .then((token) => {
          this.token = token;
          this.tokenAt = Date.now();
        })
        .catch((error) => {
          console.warn("socket token:", error.message);
          if (error.status === 401 && !this.closed) {
            this.close();
            this.onExpired(error.message);
          }
        })
        .finally(() => {
          this.refreshing = null;
        });
    }
    return this.refreshing;
  }

  /** A channel on this socket (see phoenix.js `Socket#channel`). */
  channel(topic, params) {
    return this.socket.channel(topic, params);
  }

  /** `WebSocket` or `LongPoll`: the transport phoenix.js uses now. */
  transportName() {
    return this.socket.transport === LongPoll ? "LongPoll" : "WebSocket";
  }

  report(state) {
    if (this.closed) state = "offline";
    this.onState(state, this.transportName());
  }

  /** Disconnects for good (logout). */
  close() {
    this.closed = true;
    clearInterval(this.timer);
    this.socket.disconnect();
    this.report("offline");
  }
}
