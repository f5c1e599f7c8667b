// The console's entry: the view for the location's hash (#/, #/page/2, #/batches/<id>),
// or sign-in without a token. The hash never reaches the server; the token is never in it.

import { UNAUTHORIZED, session } from "./api.js";
import { batchList } from "./batch_list.js";
import { batchPage } from "./batch_page.js";
import { signIn } from "./sign_in.js";

const view = document.getElementById("view");
const signOutButton = document.getElementById("sign-out");
let leave = () => {};
// Said once on the next view: what the last action did.
let pending = null;

function navigate(hash, message = null) {
  pending = message;
  if (location.hash === hash) render();
  else location.hash = hash;
}

function render() {
  leave();
  view.replaceChildren();
  const message = pending;
  pending = null;
  const context = { navigate, message };
  signOutButton.hidden = !session.token();
  if (!session.token()) {
    leave = signIn(view, context);
    return;
  }
  const batch = /^#\/batches\/([0-9a-fA-F-]{36})$/.exec(location.hash);
  const page = /^#\/page\/([1-9][0-9]*)$/.exec(location.hash);
  leave = batch
    ? batchPage(view, batch[1], context)
    : batchList(view, { ...context, page: page ? Number(page[1]) : 1 });
}

function signOut(message) {
  session.signOut();
  navigate("#/", message);
}

signOutButton.addEventListener("click", () => signOut("Signed out."));
window.addEventListener(UNAUTHORIZED, () => signOut("The gateway no longer accepts the token: sign in again."));
window.addEventListener("hashchange", render);
render();
