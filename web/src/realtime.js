// The socket: the official phoenix.js client on `/socket`, authenticated with short-lived
// socket tokens, falling back to LongPoll when WebSockets do not get through.
//
// Two things phoenix.js (1.8.16, pinned) does not do for us:
// - A WebSocket that fails before it opens switches the socket to LongPoll for good
//   (`connectWithFallback`), and a refused socket token fails it just so. So no (re)connect
//   starts with a stale token: `FreshTokenSocket#connect` fetches a new one first. phoenix.js
//   itself calls `connect()` for every reconnect (its reconnect timer, a page shown again), so
//   they all go through it.
// - Once on LongPoll it stays there, also when LongPoll only took over because the WebSocket
//   failed for a while (a server restart, a network change). When the WebSocket had worked on
//   this page, `Realtime` tries it again later (`replaceTransport` and connect, which falls
//   back again at once if it still fails), after 10 s, then twice as long each time, up to 5
//   min. Each try makes the channels rejoin (the conversation recovers what it missed).

import { LongPoll, Socket } from "phoenix";

/** How long a WebSocket gets to prove itself before phoenix.js falls back to LongPoll. */
export const LONGPOLL_FALLBACK_MS = 2500;

/** Socket tokens live 60 s (`socket.token_ttl_secs`); a new one is fetched this often. */
const TOKEN_REFRESH_MS = 40_000;
/** No connect starts with a token older than this: a connect must finish within the rest. */
const TOKEN_STALE_MS = 50_000;

/** The first try to go back from LongPoll to a WebSocket that had worked, then doubled. */
const WEBSOCKET_RETRY_MS = 10_000;
const WEBSOCKET_RETRY_MAX_MS = 300_000;

/** phoenix.js' `Socket`, whose every (re)connect first makes sure the token is fresh. */
class FreshTokenSocket extends Socket {
  constructor(endPoint, opts, realtime) {
    super(endPoint, opts);
    this.realtime = realtime;
  }

  connect() {
    const realtime = this.realtime;
    if (realtime.tokenAge() < TOKEN_STALE_MS) return super.connect();
    // A disconnect or another connect in the meantime changes the clock and wins.
    const clock = this.connectClock;
    realtime.refreshToken().then(() => {
      if (realtime.closed || clock !== this.connectClock) return;
      if (realtime.tokenAge() < TOKEN_STALE_MS) super.connect();
      // No token (the server is unreachable): again after phoenix.js' reconnect backoff.
      // (`reconnectTimer` and `connectClock` are phoenix.js internals, of the pinned 1.8.16:
      // without the timer, retry on a fixed delay rather than never.)
      else if (typeof this.reconnectTimer?.scheduleTimeout === "function") {
        this.reconnectTimer.scheduleTimeout();
      } else setTimeout(() => this.connect(), 5000);
    });
  }
}

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
    this.timer = null;
    this.webSocketWorked = false;
    this.retryMs = WEBSOCKET_RETRY_MS;
    this.retryTimer = null;
    this.socket = new FreshTokenSocket(
      "/socket",
      { authToken: () => this.token, longPollFallbackMs: LONGPOLL_FALLBACK_MS },
      this,
    );
    this.socket.onOpen(() => {
      if (this.socket.transport === LongPoll) {
        if (this.webSocketWorked && !this.retryTimer) {
          this.retryTimer = setTimeout(() => this.retryWebSocket(), this.retryMs);
        }
      } else {
        // Worked: a heartbeat's reply came back over it (as phoenix.js' own health check).
        this.socket.ping(() => {
          this.webSocketWorked = true;
          this.retryMs = WEBSOCKET_RETRY_MS;
        });
      }
      this.report("connected");
    });
    this.socket.onError(() => {
      // A refused token (revoked: the session ended) shows in the next token request.
      this.refreshToken();
      this.report("reconnecting");
    });
    this.socket.onClose(() => this.report("reconnecting"));
    // Timers of hidden tabs are throttled (the refresh can be late by minutes), and a network
    // coming back should not wait for the reconnect backoff.
    this.wake = () => {
      if (this.closed || document.visibilityState === "hidden") return;
      if (this.tokenAge() >= TOKEN_REFRESH_MS) this.refreshToken();
    };
    this.online = () => {
      this.wake();
      if (this.closed || this.socket.isConnected()) return;
      this.socket.disconnect();
      this.socket.connect();
    };
    document.addEventListener("visibilitychange", this.wake);
    window.addEventListener("online", this.online);
  }

  /** Fetches a socket token, then connects. */
  async connect() {
    this.report("connecting");
    await this.refreshToken();
    if (this.closed) return;
    this.timer = setInterval(() => this.refreshToken(), TOKEN_REFRESH_MS);
    this.socket.connect();
  }

  /** How old the socket token is, in ms (`Infinity` without one). */
  tokenAge() {
    return this.token ? Date.now() - this.tokenAt : Infinity;
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

  /** Leaves LongPoll for a WebSocket again; phoenix.js falls back at once if it still fails. */
  retryWebSocket() {
    this.retryTimer = null;
    if (this.closed || this.socket.transport !== LongPoll) return;
    this.retryMs = Math.min(this.retryMs * 2, WEBSOCKET_RETRY_MAX_MS);
    // phoenix.js remembers a fallback for the tab; forget it, or it would take LongPoll
    // again at once ("memorized") and this retry would never reach the WebSocket.
    sessionStorage.removeItem("phx:fallback:LongPoll");
    this.socket.replaceTransport(WebSocket);
    this.report("reconnecting");
    this.socket.connect();
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
    clearTimeout(this.retryTimer);
    document.removeEventListener("visibilitychange", this.wake);
    window.removeEventListener("online", this.online);
    this.socket.disconnect();
    this.report("offline");
  }
}
