// A few DOM helpers: no framework, just elements.

/**
 * Creates an element: `h("li", { class: "x", "data-testid": "y" }, child, "text")`.
 * Attributes whose value is `null`, `undefined` or `false` are left out; `on…` functions
 * become event listeners. Children may be nodes, strings, numbers or (nested) arrays.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** The element with `data-testid="id"` under `root` (the document by default). */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

/** Replaces every child of `el` with `children`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Shows `text` in the error line `el` (empty text hides it). */
export function showError(el, text) {
  el.textContent = text || "";
  el.hidden = !text;
}

/** Enables or disables every input and button of `form`. */
export function enableForm(form, on) {
  for (const el of form.querySelectorAll("input, button, textarea")) el.disabled = !on;
}

/** Scrolls a message list to its end if the reader was already near it. */
export function stickToBottom(list, wasNearBottom) {
  if (wasNearBottom) list.scrollTop = list.scrollHeight;
}

/** Whether a scrolled list is showing its end (within a few pixels). */
export function nearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

/** `HH:MM` of an ISO date (or now). */
export function clock(iso) {
  const date = iso ? new Date(iso) : new Date();
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
