// Builds elements from our own attribute values and text: strings become text nodes,
// never markup, so nothing an upstream sent can turn into HTML here.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") {
      node.textContent = value;
    } else if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else if (value !== false && value !== null && value !== undefined) {
      node.setAttribute(name, String(value));
    }
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function time(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return new Date(seconds * 1000).toLocaleString();
}

// A status line that screen readers announce; `kind` is "info" or "error".
export function notice(message, kind = "info") {
  return el("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status", text: message });
}

export function progress(batch) {
  const total = batch.batch_operations_count;
  const finished = batch.finished_batch_operations_count;
  return el(
    "span",
    { class: "progress" },
    el("progress", { max: Math.max(total, 1), value: finished, "aria-label": "finished operations" }),
    el("span", { class: "count", text: `${finished} / ${total}` }),
  );
}

// Previous and next buttons around "page x of y"; `go(page)` shows another page.
export function pager(pagination, go) {
  const pages = Math.max(1, Math.ceil(pagination.count / pagination.limit));
  const page = pagination.page;
  return el(
    "nav",
    { class: "pager", "aria-label": "pages" },
    el("button", { type: "button", class: "previous", disabled: page <= 1, onclick: () => go(page - 1), text: "‹ Previous" }),
    el("span", { class: "page", text: `page ${page} of ${pages} · ${pagination.count} in all` }),
    el("button", { type: "button", class: "next", disabled: page >= pages, onclick: () => go(page + 1), text: "Next ›" }),
  );
}
