// One batch: its state live from its event stream, the actions the API allows in that
// state, and its operations in submitted order with a status filter and pages.

import { FINISHED, OPERATION_STATUSES, api } from "./api.js";
import { el, notice, pager, progress, time } from "./dom.js";
import { watchBatch } from "./events.js";

export const PAGE_SIZE = 20;
// A body past this many characters is cut: the page stays responsive on 1 MiB bodies.
const SHOWN_BODY_CHARS = 20000;
// Operations finishing refresh the page of operations at most this often.
const RELOAD_MS = 1000;

export function batchPage(root, batchId, { navigate, message }) {
  const abort = new AbortController();
  const messages = el("div", { class: "messages" }, message ? notice(message) : null);
  const summary = el("dl", { class: "summary" });
  const actions = el("div", { class: "actions" });
  const filter = el(
    "select",
    { id: "status-filter", onchange: () => { page = 1; loadOperations(); } },
    el("option", { value: "", text: "all statuses" }),
    ...OPERATION_STATUSES.map((status) => el("option", { value: status, text: status })),
  );
  const operations = el("tbody");
  const footer = el("div");
  let batch = null;
  let page = 1;
  let reloadTimer = null;

  root.append(
    el("p", {}, el("a", { href: "#/", text: "‹ All batches" })),
    el("h2", {}, "Batch ", el("span", { class: "id", text: batchId })),
    messages,
    summary,
    actions,
    el(
      "div",
      { class: "title" },
      el("h3", { text: "Operations" }),
      el("label", { for: "status-filter", text: "Status " }),
      filter,
    ),
    el(
      "table",
      { class: "operations" },
      el(
        "thead",
        {},
        el("tr", {}, ...["Operation", "Request", "Status", "Response", "Response body"].map((text) => el("th", { text }))),
      ),
      operations,
    ),
    footer,
  );

  function say(text, kind = "info") {
    messages.replaceChildren(notice(text, kind));
  }

  function show(changed) {
    batch = changed;
    summary.replaceChildren(
      el("dt", { text: "Status" }),
      el("dd", {}, el("span", { class: `status ${batch.status}`, id: "batch-status", text: batch.status })),
      el("dt", { text: "Progress" }),
      el("dd", {}, progress(batch)),
      el("dt", { text: "Created" }),
      el("dd", { text: time(batch.created_at) }),
      el("dt", { text: "Updated" }),
      el("dd", { text: time(batch.updated_at) }),
    );
    const finished = FINISHED.has(batch.status);
    // Cancel while it runs; retry and delete once it has finished (the API's 422s otherwise).
    actions.replaceChildren(
      el("button", { type: "button", id: "cancel", disabled: finished, onclick: cancel, text: "Cancel" }),
      el("button", { type: "button", id: "retry", disabled: !finished, onclick: retry, text: "Retry failed" }),
      el("button", { type: "button", id: "delete", class: "danger", disabled: !finished, onclick: confirmDelete, text: "Delete" }),
    );
  }

  async function act(work) {
    for (const button of actions.querySelectorAll("button")) button.disabled = true;
    try {
      await work();
    } catch (error) {
      say(error.message, "error");
      if (batch) show(batch);
    }
  }

  const cancel = () =>
    act(async () => {
      show(await api("POST", `/v1/batches/${batchId}/cancel`));
      say("Canceled: pending operations will not be sent.");
      loadOperations();
    });

  const retry = () =>
    act(async () => {
      const created = await api("POST", `/v1/batches/${batchId}/retry`);
      navigate(`#/batches/${created.id}`, `A retry of batch ${batchId}.`);
    });

  // Asked in the page, not with confirm(): a dialog would block the tab.
  const confirmDelete = () => {
    actions.replaceChildren(
      el("span", { text: "Delete this batch and its operations? " }),
      el("button", { type: "button", id: "confirm-delete", class: "danger", onclick: remove, text: "Yes, delete" }),
      el("button", { type: "button", id: "keep", onclick: () => show(batch), text: "Keep" }),
    );
  };

  const remove = () =>
    act(async () => {
      await api("DELETE", `/v1/batches/${batchId}`);
      navigate("#/", `Deleted batch ${batchId}.`);
    });

  async function loadOperations() {
    clearTimeout(reloadTimer);
    reloadTimer = null;
    const query = [
      ["batch_ids[]", batchId],
      ["sort", "position:asc"],
      ["limit", String(PAGE_SIZE)],
      ["page", String(page)],
    ];
    if (filter.value) query.push(["status[]", filter.value]);
    try {
      const list = await api("GET", "/v1/batch_operations", { query, signal: abort.signal });
      operations.replaceChildren(...list.data.map(operationRow));
      if (!list.data.length) operations.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No operations." })));
      footer.replaceChildren(pager(list.pagination, (to) => { page = to; loadOperations(); }));
    } catch (error) {
      if (!abort.signal.aborted) say(error.message, "error");
    }
  }

  function operationFinished() {
    reloadTimer ??= setTimeout(loadOperations, RELOAD_MS);
  }

  async function start() {
    try {
      show(await api("GET", `/v1/batches/${batchId}`, { signal: abort.signal }));
    } catch (error) {
      if (!abort.signal.aborted) say(error.message, "error");
      return;
    }
    loadOperations();
    if (!FINISHED.has(batch.status)) {
      watchBatch(batchId, { onBatch: show, onOperation: operationFinished, onProblem: (error) => say(error.message, "error") }, abort.signal)
        .then(() => { if (!abort.signal.aborted) loadOperations(); });
    }
  }

  start();
  return () => {
    clearTimeout(reloadTimer);
    abort.abort();
  };
}

function operationRow(operation) {
  const request = [operation.http_method, operation.path].join(" ");
  return el(
    "tr",
    { "data-operation-id": operation.id },
    el("td", {}, el("span", { class: "id", text: operation.id })),
    el("td", {}, el("code", { class: "request", text: request })),
    el("td", {}, el("span", { class: `status ${operation.status}`, text: operation.status })),
    el("td", { class: "response-status", text: operation.response_status ?? "—" }),
    el("td", {}, el("pre", { class: "response-body", text: bodyText(operation.response_body) })),
  );
}

// The upstream's body exactly as text: never parsed as markup.
function bodyText(body) {
  if (body === null || body === undefined) return "—";
  const text = typeof body === "string" ? body : JSON.stringify(body, null, 2);
  if (text.length <= SHOWN_BODY_CHARS) return text;
  return `${text.slice(0, SHOWN_BODY_CHARS)}\n… ${text.length - SHOWN_BODY_CHARS} more characters`;
}
