/** The live job page: renders each update pollJob() delivers; the cancel button calls the API. */
import { cancelJob, pollJob } from "./pollJob.js";

const root = document.getElementById("jq-job");
const id = root.dataset.jobId;
const $ = (name) => root.querySelector(`[data-field="${name}"]`);

function render(job) {
  const status = $("status");
  status.textContent = job.status;
  status.className = `jq-status jq-${job.status}`;
  const percent = job.status === "succeeded" ? 100 : (job.progress?.percent ?? 0);
  $("bar").value = percent;
  $("percent").textContent = `${Math.round(percent)}%`;
  $("message").textContent = job.progress?.message || "";
  $("attempts").textContent = `${job.attempts} of ${job.max_attempts}`;
  if (job.result !== null && job.result !== undefined) {
    $("result").textContent = JSON.stringify(job.result, null, 2);
    $("result-box").hidden = false;
  }
  if (job.error && job.status !== "succeeded") {
    $("error").textContent = `${job.error.type}: ${job.error.message}`;
    $("error-box").hidden = false;
  }
  const finished = ["succeeded", "failed", "cancelled"].includes(job.status);
  $("cancel").hidden = finished;
  $("cancel").disabled = job.cancel_requested;
  if (job.cancel_requested && !finished) $("message").textContent += " (cancel requested)";
  root.dataset.state = job.status;
}

const poll = pollJob(id, {
  onProgress: render,
  onDone: render,
  onError: (error) => { $("notice").textContent = `Live updates stopped: ${error.message}`; },
});
window.addEventListener("pagehide", () => poll.abort());

$("cancel").addEventListener("click", async () => {
  $("cancel").disabled = true;
  try {
    render(await cancelJob(id, { csrfToken: root.dataset.csrfToken }));
  } catch (error) {
    $("notice").textContent = `Could not cancel: ${error.message}`;
  }
});
