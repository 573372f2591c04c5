// TypeScript declarations of the logbeacon browser client (GET /v1/client.d.ts).
// The script (GET /v1/client.js) defines `window.LogBeacon`; see docs/browser.md.

/** Levels the server stores; `warning`, `fatal` and upper case are normalised by the server. */
export type LogBeaconLevel = "debug" | "info" | "warn" | "error" | "critical";

export interface LogBeaconOptions {
  /** Base URL of the logbeacon server, e.g. "https://logs.example.com". Defaults to the
   *  server that served client.js. Events go to `${endpoint}/v1/logs`. */
  endpoint?: string;
  /** The public browser key (LOGBEACON_BROWSER_KEY); valid only from LOGBEACON_ALLOWED_ORIGINS. */
  key?: string;
  /** Joins this page's events; a random id per page load when absent. */
  sessionId?: string;
  release?: string;
  environment?: string;
  /** Default "web". */
  service?: string;
  /** Milliseconds between flushes of the queue; default 2000. */
  flushInterval?: number;
  /** Events per request; the queue is also flushed when it holds this many. Default 20, max 100. */
  maxBatch?: number;
}

/** Extra fields of a manual event: `message`, `component`, correlation ids, anything JSON. */
export interface LogBeaconFields {
  message?: string;
  component?: string;
  route?: string;
  trace_id?: string;
  request_id?: string;
  user_id?: string;
  [field: string]: unknown;
}

export interface LogBeaconApi {
  /** Install the handlers (once) and set the options (every call). Never throws. */
  init(options?: LogBeaconOptions): void;
  /** Queue a manual event, subject to de-duplication and the rate limit. Never throws. */
  log(level: LogBeaconLevel | string, event: string, fields?: LogBeaconFields): void;
  /** Report `error` events of an EventSource as `sse_error`; returns a function that stops. */
  watchEventSource(source: EventSource, component?: string): () => void;
  /** Send every queued event now (sendBeacon, else fetch with keepalive). */
  flush(): void;
}

declare global {
  interface Window {
    LogBeacon: LogBeaconApi;
  }
  // eslint-disable-next-line no-var
  var LogBeacon: LogBeaconApi;
}
