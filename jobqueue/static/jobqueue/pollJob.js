/**
 * Follow a jobqueue job live through the REST API, with no dependencies.
 *
 *   import { pollJob, cancelJob } from "/static/jobqueue/pollJob.js";
 *   const poll = pollJob(42, {
 *     onProgress: (job) => render(job),   // each time status or progress changes
 *     onDone: (job) => render(job),       // once: succeeded, failed or cancelled
 *     onError: (error) => show(error),    // once: the job is gone or access is refused
 *     onTransport: (name) => {},          // "events" or "long-poll", when it starts using one
 *   });
 *   poll.abort();                         // stop following (e.g. on page leave)
 *   const job = await poll.done;          // the finished job, or null once aborted
 *
 * It listens to the job's server-sent events (GET /api/jobs/{id}/events/)
 * with EventSource, which reconnects by itself after a lost connection or a
 * server restart, sending Last-Event-ID so that no change is missed. If the
 * stream is refused (an error status, a proxy that does not pass it) or the
 * browser has no EventSource, it falls back to long-polling
 * GET /api/jobs/{id}/?wait=25: the server holds each request until the job
 * changes. Network errors, 5xx and 429 are retried with jittered exponential
 * backoff (429 honours Retry-After); 401, 403 and 404 end the poll through
 * onError. Session cookies are sent; pass `headers: {Authorization: "Token ..."}`
 * for token authentication (EventSource cannot send headers, so that long-polls).
 */

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const PERMANENT = new Set([400, 401, 403, 404]);

export class JobPollError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "JobPollError";
    this.status = status;
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

function backoff(failures, maxMs) {
  const ceiling = Math.min(maxMs, 1000 * 2 ** failures);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function jobUrl(baseUrl, id, suffix) {
  return `${baseUrl.replace(/\/?$/, "/")}${encodeURIComponent(id)}/${suffix}`;
}

export function pollJob(id, {
  onProgress = () => {},
  onDone = () => {},
  onError = () => {},
  wait = 25,
  baseUrl = "/api/jobs/",
  headers = {},
  maxBackoffMs = 30000,
  signal = undefined,
  onTransport = () => {},
} = {}) {
  const controller = new AbortController();
  signal?.addEventListener("abort", () => controller.abort(), { once: true });
  const aborted = controller.signal;
  let seen = null;

  function deliver(job) {
    const state = JSON.stringify([job.status, job.progress, job.attempts, job.cancel_requested]);
    if (state !== seen) {
      seen = state;
      onProgress(job);
    }
    if (FINISHED.has(job.status)) {
      onDone(job);
      return true;
    }
    return false;
  }

  // The event stream: resolves to the finished job, null once aborted, or undefined when
  // the stream was refused and the long-poll must take over.
  function stream() {
    if (typeof EventSource === "undefined" || Object.keys(headers).length) {
      return Promise.resolve(undefined);
    }
    return new Promise((resolve) => {
      const source = new EventSource(jobUrl(baseUrl, id, "events/"));
      const stop = (value) => { source.close(); resolve(value); };
      aborted.addEventListener("abort", () => stop(null), { once: true });
      source.onopen = () => onTransport("events");
      source.onmessage = (event) => {
        const job = JSON.parse(event.data);
        if (deliver(job)) stop(job);
      };
      // While CONNECTING the browser retries by itself (with Last-Event-ID); CLOSED means
      // the stream was refused: an error status, or not an event stream at all.
      source.onerror = () => { if (source.readyState === EventSource.CLOSED) stop(undefined); };
    });
  }

  async function longPoll() {
    let failures = 0;
    let first = true;
    onTransport("long-poll");
    while (!aborted.aborted) {
      // The first request answers at once with the current state; later ones wait for a change.
      const url = jobUrl(baseUrl, id, `?wait=${first ? 0 : wait}`);
      const sent = Date.now();
      let response;
      try {
        response = await fetch(url, {
          headers: { Accept: "application/json", ...headers },
          credentials: "same-origin",
          signal: aborted,
        });
      } catch (error) {
        if (aborted.aborted) return null;
        await sleep(backoff(failures++, maxBackoffMs), aborted);
        continue;
      }
      if (PERMANENT.has(response.status)) {
        const error = new JobPollError(`job ${id}: HTTP ${response.status}`, response.status);
        onError(error);
        throw error;
      }
      if (!response.ok) {
        const retryAfter = Number(response.headers.get("Retry-After")) * 1000;
        await sleep(retryAfter || backoff(failures++, maxBackoffMs), aborted);
        continue;
      }
      failures = 0;
      const job = await response.json();
      if (deliver(job)) return job;
      // A server that answers long-polls at once must not be hammered.
      if (!first && Date.now() - sent < 500) await sleep(1000, aborted);
      first = false;
    }
    return null;
  }

  async function run() {
    const streamed = await stream();
    return streamed === undefined ? longPoll() : streamed;
  }

  const done = run();
  done.catch(() => {}); // reported through onError; awaiting `done` still sees the rejection
  return { abort: () => controller.abort(), done };
}

/** Ask the server to cancel job `id`; resolves to the job (a running one stops at its next check). */
export async function cancelJob(id, { baseUrl = "/api/jobs/", headers = {}, csrfToken = "" } = {}) {
  const response = await fetch(jobUrl(baseUrl, id, "cancel/"), {
    method: "POST",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken, ...headers },
    credentials: "same-origin",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new JobPollError(body.detail || `HTTP ${response.status}`, response.status);
  return body;
}
