// Sign-in: the token is tried on the API, then kept in session storage (this tab only,
// gone when it closes). The input has no name and the CSP forbids form submission, so
// the token can never travel in a URL or a form post.

import { api, session } from "./api.js";
import { el, notice } from "./dom.js";

export function signIn(root, { navigate, message }) {
  const input = el("input", { id: "token", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const status = el("div", { class: "messages" }, message ? notice(message) : null);
  const button = el("button", { type: "submit", text: "Sign in" });
  const form = el(
    "form",
    { class: "sign-in", onsubmit: (event) => submit(event) },
    el("label", { for: "token", text: "API token" }),
    input,
    button,
    status,
  );

  async function submit(event) {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    button.disabled = true;
    try {
      await api("GET", "/v1/batches", { query: [["limit", "1"]], token });
      session.signIn(token);
      navigate("#/");
    } catch (error) {
      const why = error.status === 401 ? "The gateway refused this token." : error.message;
      status.replaceChildren(notice(why, "error"));
    } finally {
      button.disabled = false;
    }
  }

  root.append(el("h2", { text: "Sign in" }), form);
  input.focus();
  return () => {};
}
