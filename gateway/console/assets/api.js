// The REST API as the console calls it: the bearer token from session storage in the
// Authorization header, never in a URL and never in a cookie.

const TOKEN_KEY = "batchd.token";
export const FINISHED = new Set(["completed", "canceled"]);
export const OPERATION_STATUSES = ["pending", "in_progress", "completed", "failed", "timed_out", "canceled"];

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  signIn: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  signOut: () => sessionStorage.removeItem(TOKEN_KEY),
};

// The contract's error JSON as an exception; `message` is the API's own words.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.message ?? `The gateway answered HTTP ${status}`);
    this.status = status;
    this.code = problem?.code ?? null;
  }
}

// A 401 anywhere means the token no longer works: the console signs out.
export const UNAUTHORIZED = "batchd:unauthorized";

export function authorized(token = session.token(), headers = {}) {
  return { ...headers, Authorization: `Bearer ${token}` };
}

export function apiUrl(path, query = []) {
  const url = new URL(path, location.origin);
  for (const [name, value] of query) url.searchParams.append(name, value);
  return url;
}

// `query` is a list of [name, value] pairs, so that `status[]` can repeat.
export async function api(method, path, { query = [], body, token, signal } = {}) {
  const headers = authorized(token, { Accept: "application/json" });
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(apiUrl(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: "omit",
    cache: "no-store",
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw failure(response.status, data, token);
  return data;
}

export function failure(status, problem, token) {
  // A token being tried at sign-in is not the session's: its 401 signs nobody out.
  if (status === 401 && token === undefined) window.dispatchEvent(new Event(UNAUTHORIZED));
  return new ApiError(status, problem);
}
