// The browser client of Fawkes: accounts, a room with presence, private conversations.
// The access token lives in sessionStorage (this tab only, gone when it closes), so a
// reload stays logged in.

import { Api } from "./api.js";
import { ConversationView } from "./conversation.js";
import { byTestId, showError } from "./dom.js";
import { Realtime } from "./realtime.js";
import { RoomView } from "./room.js";

const TOKEN_KEY = "fawkes.token";
/** A message for the log-in form after a reload (why the session ended). */
const NOTICE_KEY = "fawkes.notice";

const api = new Api(() => sessionStorage.getItem(TOKEN_KEY));

function showConnection(state, transport) {
  const box = byTestId("connection");
  box.dataset.state = state;
  box.dataset.transport = transport;
  byTestId("conn-state").textContent = state;
  byTestId("conn-transport").textContent = state === "offline" ? "" : transport;
}

/** Logged in as `me`: connect, and show the room and the conversations. */
async function start(me) {
  byTestId("auth").hidden = true;
  byTestId("chat").hidden = false;
  byTestId("me").hidden = false;
  byTestId("me-name").textContent = `${me.name} ${me.subname}`;
  byTestId("me-name").dataset.userId = me.id;

  const realtime = new Realtime(api, showConnection, (message) => signedOut(`Your session ended (${message}); please log in again`));
  const ctx = { api, me, realtime, names: new Map([[me.id, me.name]]) };
  const room = new RoomView(byTestId("room"), ctx);
  const conversations = new ConversationView(byTestId("private"), ctx);
  byTestId("logout").onclick = async () => {
    realtime.close();
    try {
      await api.logout();
    } catch (error) {
      console.warn("logout:", error.message);
    }
    sessionStorage.clear();
    sessionStorage.setItem(NOTICE_KEY, "You are logged out");
    location.reload();
  };
  await realtime.connect();
  const lastRoom = sessionStorage.getItem("fawkes.room");
  if (lastRoom) room.join(lastRoom);
  await conversations.loadUsers();
}

/** Back to a fresh page with the log-in form, saying `message`: the session is gone. */
function signedOut(message) {
  sessionStorage.clear();
  sessionStorage.setItem(NOTICE_KEY, message);
  location.reload();
}

async function logIn(email, password) {
  const session = await api.login(email, password);
  sessionStorage.setItem(TOKEN_KEY, session.token);
  await start(session.user);
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

function busy(form, on) {
  for (const button of form.querySelectorAll("button")) button.disabled = on;
}

byTestId("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const error = byTestId("login-error");
  showError(error, "");
  busy(form, true);
  try {
    const { email, password } = formValues(form);
    await logIn(email.trim(), password);
  } catch (e) {
    showError(error, `Log in failed: ${e.message}`);
  } finally {
    busy(form, false);
  }
});

byTestId("register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const error = byTestId("register-error");
  showError(error, "");
  busy(form, true);
  try {
    const { name, subname, job, email, password } = formValues(form);
    await api.register({ name: name.trim(), subname: subname.trim(), job: job.trim(), email: email.trim(), password });
    await logIn(email.trim(), password);
  } catch (e) {
    showError(error, `Registration failed: ${e.message}`);
  } finally {
    busy(form, false);
  }
});

const notice = sessionStorage.getItem(NOTICE_KEY);
sessionStorage.removeItem(NOTICE_KEY);
if (notice) showError(byTestId("login-error"), notice);

// A token kept from before a reload: still good?
if (sessionStorage.getItem(TOKEN_KEY)) {
  let me = null;
  try {
    me = await api.me();
  } catch (e) {
    // Only a refused token (401: expired, revoked) ends the session; a server that is down
    // or failing keeps it for the next reload.
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showError(byTestId("login-error"), `Please log in again: ${e.message}`);
    } else {
      showError(byTestId("login-error"), `Could not check your session (${e.message}); reload the page to try again`);
    }
  }
  if (me) await start(me);
}
