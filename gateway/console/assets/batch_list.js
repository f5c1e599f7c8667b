// The tenant's batches, a page at a time, newest first; unfinished ones update live
// from their event streams.

import { FINISHED, api } from "./api.js";
import { el, notice, pager, progress, time } from "./dom.js";
import { watchBatch } from "./events.js";

export const PAGE_SIZE = 20;
// Under HTTP/1.1 a browser opens about 6 connections to one host: a few streams at a
// time leave room for the API calls, and the next waiting batch is watched as one ends.
const MAX_STREAMS = 3;
// Meanwhile the batches waiting for a stream are read this often.
const POLL_MS = 2000;

export function batchList(root, { navigate, message, page }) {
  const abort = new AbortController();
  const messages = el("div", { class: "messages" }, message ? notice(message) : null);
  const body = el("tbody");
  const footer = el("div");
  root.append(
    el(
      "div",
      { class: "title" },
      el("h2", { text: "Batches" }),
      el("button", { type: "button", class: "refresh", text: "Refresh", onclick: () => load() }),
    ),
    messages,
    el(
      "table",
      { class: "batches" },
      el("thead", {}, el("tr", {}, ...["Batch", "Status", "Progress", "Created", "Updated"].map((text) => el("th", { text })))),
      body,
    ),
    footer,
  );

  let streams = null;
  async function load() {
    // A refresh ends the previous page's streams; leaving the view ends them all.
    streams?.abort();
    streams = new AbortController();
    const watching = AbortSignal.any([abort.signal, streams.signal]);
    try {
      const list = await api("GET", "/v1/batches", {
        query: [["limit", String(PAGE_SIZE)], ["page", String(page)]],
        signal: abort.signal,
      });
      const rows = list.data.map(row);
      body.replaceChildren(...rows.map((r) => r.element));
      if (!list.data.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No batches yet." })));
      footer.replaceChildren(pager(list.pagination, (to) => navigate(`#/page/${to}`)));
      watchAll(rows.filter((r) => !FINISHED.has(r.batch.status)), watching);
    } catch (error) {
      if (!abort.signal.aborted) messages.replaceChildren(notice(error.message, "error"));
    }
  }

  function watchAll(waiting, signal) {
    const next = async () => {
      const item = waiting.shift();
      if (!item || signal.aborted) return;
      await watchBatch(item.batch.id, { onBatch: item.update }, signal);
      next();
    };
    for (let i = 0; i < MAX_STREAMS; i++) next();
    poll(waiting, signal);
  }

  function poll(waiting, signal) {
    const timer = setInterval(async () => {
      if (!waiting.length) {
        clearInterval(timer);
        return;
      }
      const query = [["limit", String(PAGE_SIZE)], ...waiting.map((item) => ["ids[]", item.batch.id])];
      try {
        const list = await api("GET", "/v1/batches", { query, signal });
        for (const batch of list.data) waiting.find((item) => item.batch.id === batch.id)?.update(batch);
      } catch {
        // The next poll tries again; a refused token has signed the console out already.
      }
    }, POLL_MS);
    signal.addEventListener("abort", () => clearInterval(timer), { once: true });
  }

  load();
  return () => abort.abort();
}

function row(batch) {
  const element = el("tr", { "data-batch-id": batch.id });
  const item = { batch, element, update: (changed) => fill(item, changed) };
  fill(item, batch);
  return item;
}

function fill(item, batch) {
  item.batch = batch;
  item.element.replaceChildren(
    el("td", {}, el("a", { href: `#/batches/${batch.id}`, class: "id", text: batch.id })),
    el("td", {}, el("span", { class: `status ${batch.status}`, text: batch.status })),
    el("td", {}, progress(batch)),
    el("td", { text: time(batch.created_at) }),
    el("td", { text: time(batch.updated_at) }),
  );
}
