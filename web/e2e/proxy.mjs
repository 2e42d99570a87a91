// A small HTTP proxy for the end-to-end scenario: a browser context set to use it reaches the
// server only through it, and it can turn into a network that blocks WebSockets (as some
// corporate proxies do) while plain HTTP, and so LongPoll, still gets through.
//
// Chromium reaches a WebSocket through an HTTP proxy with `CONNECT host:port` (a tunnel);
// a request with `Upgrade: websocket` could come too. While blocking, the proxy answers both
// `403 Forbidden` and cuts the tunnels it had opened; it only ever connects to `target`.

import http from "node:http";
import net from "node:net";

/** The answer to a refused CONNECT or Upgrade, on the raw client socket. */
const FORBIDDEN = "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/**
 * Starts a proxy on 127.0.0.1 (a free port) in front of `target` (`http://host:port`).
 * Returns `{ server, block(), allow(), close(), counts }`; `server` is the proxy's URL for
 * Playwright's `proxy: { server }`, `counts` tells how many requests, tunnels and refusals.
 */
export async function startProxy(target) {
  const upstream = new URL(target);
  const host = upstream.hostname;
  const port = Number(upstream.port || 80);
  const tunnels = new Set();
  const counts = { requests: 0, tunnels: 0, refused: 0 };
  let blocking = false;

  const isTarget = (authority) => authority === `${host}:${port}`;

  // Plain HTTP: the browser sends the absolute URL; forward it as a normal request.
  const server = http.createServer((req, res) => {
    let url;
    try {
      url = new URL(req.url);
    } catch {
      url = null;
    }
    if (!url || !isTarget(`${url.hostname}:${url.port || 80}`)) {
      res.writeHead(403).end();
      return;
    }
    counts.requests += 1;
    const headers = { ...req.headers };
    delete headers["proxy-connection"];
    const out = http.request({ host, port, method: req.method, path: `${url.pathname}${url.search}`, headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    out.on("error", () => res.destroy());
    res.on("close", () => out.destroy());
    req.pipe(out);
  });

  // Both ends of a tunnel close together; `first` is written to the server before piping.
  const tunnel = (client, first, head) => {
    const remote = net.connect(port, host, () => {
      if (first.reply) client.write(first.reply);
      if (first.request) remote.write(first.request);
      if (head?.length) remote.write(head);
      remote.pipe(client);
      client.pipe(remote);
    });
    const both = { client, remote };
    tunnels.add(both);
    counts.tunnels += 1;
    const end = () => {
      tunnels.delete(both);
      client.destroy();
      remote.destroy();
    };
    for (const socket of [client, remote]) {
      socket.on("error", end);
      socket.on("close", end);
    }
  };

  server.on("connect", (req, client, head) => {
    if (blocking || !isTarget(req.url)) {
      counts.refused += 1;
      client.end(FORBIDDEN);
      return;
    }
    tunnel(client, { reply: "HTTP/1.1 200 Connection Established\r\n\r\n" }, head);
  });

  server.on("upgrade", (req, client, head) => {
    let url;
    try {
      url = new URL(req.url);
    } catch {
      url = null;
    }
    if (blocking || !url || !isTarget(`${url.hostname}:${url.port || 80}`)) {
      counts.refused += 1;
      client.end(FORBIDDEN);
      return;
    }
    const lines = [`${req.method} ${url.pathname}${url.search} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    tunnel(client, { request: `${lines.join("\r\n")}\r\n\r\n` }, head);
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });

  return {
    server: `http://127.0.0.1:${server.address().port}`,
    counts,
    /** From now on WebSockets are refused, and the open ones are cut (as a network change). */
    block() {
      blocking = true;
      for (const { client, remote } of tunnels) {
        client.destroy();
        remote.destroy();
      }
      tunnels.clear();
    },
    /** WebSockets get through again. */
    allow() {
      blocking = false;
    },
    close() {
      server.close();
      server.closeAllConnections();
      for (const { client, remote } of tunnels) {
        client.destroy();
        remote.destroy();
      }
    },
  };
}
