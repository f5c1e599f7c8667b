// A batch's Server-Sent Events (GET /v1/batches/{id}/events) read with fetch():
// EventSource cannot send the Authorization header, and the token must not go in the URL.
//
// Parsed as the HTML standard's event stream: `data:` lines join, `id:` is kept and sent
// back as Last-Event-ID on reconnect, `retry:` sets the reconnect delay, `:` lines are
// comments (keep-alives). `end` closes a complete stream (a 204 answers a reconnect
// with nothing left to send); other event types update the batch when their data holds
// one, and are otherwise ignored.

import { FINISHED, apiUrl, authorized, failure } from "./api.js";

const DEFAULT_RETRY_MS = 3000;
const MAX_RETRY_MS = 30000;

export class EventStreamParser {
  constructor() {
    this.buffer = "";
    this.afterCR = false;
    this.data = [];
    this.type = "";
    this.lastEventId = null;
    this.retry = null;
  }

  // The complete events in `text` (a chunk of the stream, cut anywhere).
  feed(text) {
    // A "\r" that ended the last chunk ended its line; a "\n" opening this one is its other half.
    if (!text) return [];
    const rest = this.afterCR && text.startsWith("\n") ? text.slice(1) : text;
    this.afterCR = rest.endsWith("\r");
    const lines = (this.buffer + rest).split(/\r\n|\r|\n/);
    // The last piece has no line end yet.
    this.buffer = lines.pop();
    const events = [];
    for (const line of lines) {
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.retry = Number(value);
    return null;
  }

  dispatch() {
    const event = this.data.length ? { type: this.type || "message", data: this.data.join("\n") } : null;
    this.data = [];
    this.type = "";
    return event;
  }
}

// Calls `onBatch(batch)` for every state of the batch and `onOperation(operation)` for
// each operation that finished, until the batch has finished or `signal` aborts.
// `onProblem(error)` hears of failures; the watch reconnects after those it can outlast.
export async function watchBatch(batchId, { onBatch, onOperation = () => {}, onProblem = () => {} }, signal) {
  const parser = new EventStreamParser();
  // Failures in a row: each doubles the wait before the next try.
  let failures = 0;
  while (!signal.aborted) {
    let finished = false;
    try {
      finished = await readStream(batchId, parser, { onBatch, onOperation, onProblem }, signal);
      failures = 0;
    } catch (error) {
      if (signal.aborted) return;
      failures += 1;
      // An event id the gateway does not know: start again from the batch's state.
      if (error.status === 400 && parser.lastEventId !== null) parser.lastEventId = null;
      else onProblem(error);
      if (error.status === 401 || error.status === 404) return;
    }
    if (finished) return;
    const wait = (parser.retry ?? DEFAULT_RETRY_MS) * 2 ** Math.max(failures - 1, 0);
    await sleep(Math.min(wait, MAX_RETRY_MS), signal);
  }
}

async function readStream(batchId, parser, handlers, signal) {
  const headers = authorized(undefined, { Accept: "text/event-stream" });
  if (parser.lastEventId !== null) headers["Last-Event-ID"] = parser.lastEventId;
  const response = await fetch(apiUrl(`/v1/batches/${encodeURIComponent(batchId)}/events`), {
    headers,
    signal,
    credentials: "omit",
    cache: "no-store",
  });
  if (!response.ok) throw failure(response.status, await response.json().catch(() => null));
  // A finished batch with nothing left to send since the last event id.
  if (response.status === 204 || !response.body) return true;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let finished = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return finished;
    for (const event of parser.feed(value)) {
      finished = handle(event, handlers) || finished;
    }
  }
}

// Whether the event says the batch has finished.
function handle(event, { onBatch, onOperation, onProblem }) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return false;
  }
  if (event.type === "error") {
    onProblem(failure(data?.http_status === "unauthorized" ? 401 : 503, data));
    return false;
  }
  if (event.type === "batch_operation" && data?.batch_operation) onOperation(data.batch_operation);
  const batch = data?.object === "batch" ? data : data?.batch;
  const known = batch?.object === "batch";
  if (known) onBatch(batch);
  return event.type === "end" || (known && FINISHED.has(batch.status));
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
