// The dashboard's only ways to talk to the server: same-origin fetch and EventSource, both
// authenticated by the HttpOnly `logbeacon_token` cookie (never by a token in JavaScript).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `request failed (${status})`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** Fired on window when the server stops accepting our cookie (token rotated or removed). */
export const SIGNED_OUT_EVENT = "logbeacon:signed-out";

function signalSignedOut() {
  window.dispatchEvent(new CustomEvent(SIGNED_OUT_EVENT));
}

function apiUrl(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") {
      url.searchParams.set(key, String(value));
    }
  }
  return url;
}

/**
 * GET a JSON API. Resolves with the body; rejects with ApiError (status, code, server message)
 * or with the AbortError of `signal`.
 */
export async function getJSON(path, params, { signal } = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path, params), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "the server cannot be reached");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    body = null;
  }
  if (!response.ok) {
    if (response.status === 401) signalSignedOut();
    const code = body && typeof body.error === "string" ? body.error : "http_error";
    const message = body && typeof body.message === "string" ? body.message : null;
    throw new ApiError(response.status, code, message || `${path} answered ${response.status}`);
  }
  return body;
}

/**
 * Follow the live tail (`GET /v1/stream`, Server-Sent Events `event: log`) with /v1/logs
 * filters. `onEvent` gets each parsed event; `onState` gets "connecting", "live",
 * "reconnecting" or "closed". Returns a function that closes the stream.
 */
export function openStream(params, onEvent, onState = () => {}) {
  const source = new EventSource(apiUrl("/v1/stream", params).toString(), {
    withCredentials: false,
  });
  let closed = false;
  onState("connecting");
  source.addEventListener("open", () => onState("live"));
  source.addEventListener("log", (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    if (event && typeof event === "object") onEvent(event);
  });
  source.addEventListener("error", () => {
    if (closed) return;
    if (source.readyState === EventSource.CLOSED) {
      // The server refused the stream (bad filter or expired cookie): ask why once.
      onState("closed");
      getJSON("/v1/logs", { ...params, limit: 1 }).catch(() => {});
    } else {
      onState("reconnecting");
    }
  });
  return () => {
    closed = true;
    source.close();
  };
}
