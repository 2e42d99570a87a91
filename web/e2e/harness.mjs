// Helpers for the end-to-end scenario: steps that print `ok <step>` and leave screenshots,
// and waits that each have a deadline and fail saying what they waited for.

import { mkdir } from "node:fs/promises";
import { join } from "node:path";

/** How long any one wait may take. */
export const DEADLINE_MS = 15_000;

/** Runs named steps over a set of pages, screenshotting each page after each step. */
export class Scenario {
  constructor(artifactDir) {
    this.dir = artifactDir;
    this.pages = new Map(); // who -> page
    this.logs = new Map(); // who -> console lines
    this.count = 0;
  }

  async init() {
    await mkdir(this.dir, { recursive: true });
  }

  /** Follows `page` as `who`: its screenshots and its console. */
  watch(who, page) {
    this.pages.set(who, page);
    const lines = this.logs.get(who) ?? [];
    this.logs.set(who, lines);
    page.on("console", (message) => lines.push(`[${message.type()}] ${message.text()}`));
    page.on("pageerror", (error) => lines.push(`[pageerror] ${error.message}`));
  }

  forget(who) {
    this.pages.delete(who);
  }

  /** Runs `body`; prints `ok <name>` and saves screenshots, or fails the run with both. */
  async step(name, body) {
    this.count += 1;
    const prefix = `${String(this.count).padStart(2, "0")}-${slug(name)}`;
    try {
      await body();
    } catch (error) {
      await this.screenshots(`FAILED-${prefix}`);
      console.error(`FAILED ${name}: ${error.message}`);
      for (const [who, lines] of this.logs) {
        if (lines.length) console.error(`--- ${who}'s console (last 30 lines)\n${lines.slice(-30).join("\n")}`);
      }
      console.error(`screenshots in ${this.dir}`);
      throw error;
    }
    await this.screenshots(prefix);
    console.log(`ok ${name}`);
  }

  async screenshots(prefix) {
    for (const [who, page] of this.pages) {
      if (page.isClosed()) continue;
      await page
        .screenshot({ path: join(this.dir, `${prefix}-${who}.png`), fullPage: true, timeout: 5_000 })
        .catch((error) => console.error(`screenshot of ${who}: ${error.message}`));
    }
  }
}

function slug(text) {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 60);
}

/** `[data-testid="id"]`. */
export const tid = (id) => `[data-testid="${id}"]`;

/**
 * Waits until `predicate(arg)`, evaluated in the page, is true; fails saying `what` (a text,
 * or an async function giving one when the wait failed, to tell what the page shows).
 */
export async function until(page, what, predicate, arg, timeout = DEADLINE_MS) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 50 });
  } catch (error) {
    if (error.name !== "TimeoutError") throw error;
    const label = typeof what === "function" ? await what().catch((e) => `? (${e.message})`) : what;
    throw new Error(`${label}: not within ${timeout} ms`);
  }
}

/** Waits for an element matching `selector` that contains `text`; fails saying `what`. */
export async function seeText(page, what, selector, text, timeout = DEADLINE_MS) {
  await until(
    page,
    `${what} (a ${selector} with ${JSON.stringify(text)})`,
    ([sel, t]) => [...document.querySelectorAll(sel)].some((el) => el.textContent.includes(t)),
    [selector, text],
    timeout,
  );
}

/** Waits for the connection badge to say `state` over `transport`. */
export async function connectedOver(page, who, transport, timeout = DEADLINE_MS) {
  await until(
    page,
    async () => `${who} is connected over ${transport} (the page shows "${await page.locator(tid("connection")).innerText()}")`,
    (t) => {
      const box = document.querySelector('[data-testid="connection"]');
      return box.dataset.state === "connected" && box.dataset.transport === t;
    },
    transport,
    timeout,
  );
}

/** Waits until `who`'s presence list shows `name` with `devices` devices. */
export async function seesPresence(page, who, name, devices) {
  await until(
    page,
    `${who} sees ${name} online on ${devices} device(s)`,
    ([n, d]) =>
      [...document.querySelectorAll('[data-testid="presence-item"]')].some(
        (el) => el.dataset.name === n && el.dataset.devices === String(d),
      ),
    [name, devices],
  );
}

/** Fills and submits the room form with `text`. */
export async function sendRoom(page, text) {
  await page.fill(tid("room-input"), text);
  await page.click(tid("room-send"));
}

/** Fills and submits the private message form with `text`. */
export async function sendPrivate(page, text) {
  await page.fill(tid("conv-input"), text);
  await page.click(tid("conv-send"));
}
