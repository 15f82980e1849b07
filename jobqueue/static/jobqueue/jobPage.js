/**
 * The live job page: renders each update pollJob() delivers (over the job's event stream,
 * or long-polls where that is refused); the cancel button calls the API.
 */
import { cancelJob, pollJob } from "./pollJob.js";

const root = document.getElementById("jq-job");
const id = root.dataset.jobId;
const $ = (name) => root.querySelector(`[data-field="${name}"]`);
const FINISHED = ["succeeded", "failed", "cancelled"];
const when = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});

let latest = null;     // the last job rendered
let receivedAt = 0;    // when it arrived (ms), to tick the elapsed time on from its figure

function moment(iso) {
  return iso ? when.format(new Date(iso)) : "—";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  const parts = [[Math.floor(s / 3600), "h"], [Math.floor((s % 3600) / 60), "min"], [s % 60, "s"]];
  const shown = parts.filter(([n], i) => n > 0 || i === 2).slice(0, 2);
  return shown.map(([n, unit]) => `${n} ${unit}`).join(" ");
}

function renderClock() {
  if (!latest) return;
  const running = latest.status === "running";
  const extra = running ? (Date.now() - receivedAt) / 1000 : 0;
  $("elapsed").textContent = duration(
    latest.elapsed_seconds === null ? null : latest.elapsed_seconds + extra,
  );
}

function render(job) {
  latest = job;
  receivedAt = Date.now();
  const status = $("status");
  status.textContent = job.status;
  status.className = `jq-status jq-${job.status}`;
  const percent = job.status === "succeeded" ? 100 : (job.progress?.percent ?? 0);
  $("bar").value = percent;
  $("percent").textContent = `${Math.round(percent)}%`;
  $("message").textContent = job.progress?.message || "";
  $("attempts").textContent = `${job.attempts} of ${job.max_attempts}`;
  $("created").textContent = moment(job.created_at);
  $("started").textContent = moment(job.started_at);
  renderClock();
  const queued = job.status === "queued" && job.position_in_queue !== null;
  $("queue-box").hidden = !queued;
  if (queued) {
    $("position").textContent = job.position_in_queue === 0
      ? "next in line" : `${job.position_in_queue} ahead`;
    $("eta").textContent = job.estimated_wait_seconds === null
      ? "unknown (no worker serves this queue yet)" : `about ${duration(job.estimated_wait_seconds)}`;
  }
  if (job.result !== null && job.result !== undefined) {
    $("result").textContent = JSON.stringify(job.result, null, 2);
    $("result-box").hidden = false;
  }
  if (job.status === "cancelled") {
    // A cancel is what the user asked for, not an error to alarm them with.
    $("error-box").hidden = true;
    $("cancelled").textContent = `Cancelled by you at ${moment(job.finished_at)}.`;
    $("cancelled").hidden = false;
  } else if (job.error && job.status !== "succeeded") {
    $("error").textContent = `${job.error.type}: ${job.error.message}`;
    $("error-box").hidden = false;
  }
  const finished = FINISHED.includes(job.status);
  $("cancel").hidden = finished;
  $("cancel").disabled = job.cancel_requested;
  if (job.cancel_requested && !finished) $("message").textContent += " (cancel requested)";
  root.dataset.state = job.status;
}

const poll = pollJob(id, {
  onProgress: render,
  onDone: render,
  onError: (error) => { $("notice").textContent = `Live updates stopped: ${error.message}`; },
  onTransport: (name) => { root.dataset.transport = name; },
});
window.addEventListener("pagehide", () => poll.abort());
setInterval(renderClock, 1000);

$("cancel").addEventListener("click", async () => {
  $("cancel").disabled = true;
  try {
    render(await cancelJob(id, { csrfToken: root.dataset.csrfToken }));
  } catch (error) {
    $("notice").textContent = `Could not cancel: ${error.message}`;
  }
});
