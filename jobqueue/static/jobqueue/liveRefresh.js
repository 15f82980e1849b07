/**
 * Live admin pages: every few seconds, fetch the page again and swap in the parts that
 * change (no reload, so no flash, and the scroll position stays).
 *
 * The page opts in with a toggle button:
 *   <button id="jq-live-toggle" data-regions="#result_list" data-interval="3000"
 *           data-while=".jq-running, .jq-queued">
 * - data-regions: the elements (by id) replaced by their namesakes in the fresh page;
 * - data-interval: milliseconds between refreshes;
 * - data-while (optional): refreshing stops once no element matches (a finished job).
 * The button pauses and resumes; a pause is remembered for the session. Nothing is
 * refreshed while a row of the job list is ticked, so a selection is never lost.
 */
(() => {
  const toggle = document.getElementById("jq-live-toggle");
  if (!toggle) return;
  const regions = toggle.dataset.regions.split(",").map((s) => s.trim());
  const interval = Number(toggle.dataset.interval || 3000);
  const stillLive = toggle.dataset.while;
  const status = document.getElementById("jq-live-status");
  const PAUSED_KEY = "jobqueue.livePaused";
  let paused = sessionStorage.getItem(PAUSED_KEY) === "1";
  let timer = null;

  function show(text) {
    toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
    toggle.setAttribute("aria-pressed", String(paused));
    if (status && text) status.textContent = text;
  }

  function live() {
    return !stillLive || document.querySelector(stillLive) !== null;
  }

  async function refresh() {
    timer = null;
    if (paused || !live()) return show(paused ? "Paused" : "Up to date: nothing is running");
    const busy = document.querySelector("#result_list input.action-select:checked");
    if (!document.hidden && !busy) {
      try {
        const response = await fetch(location.href, { credentials: "same-origin" });
        if (response.ok) {
          const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
          for (const selector of regions) {
            const now = document.querySelector(selector);
            const next = fresh.querySelector(selector);
            if (now && next) now.innerHTML = next.innerHTML;
          }
          show(`Updated ${new Date().toTimeString().slice(0, 8)}`);
          document.dispatchEvent(new CustomEvent("jq:refreshed"));
        } else {
          show(`Update failed (${response.status}); retrying`);
        }
      } catch (error) {
        show("Update failed (offline?); retrying");
      }
    }
    schedule();
  }

  function schedule() {
    if (!paused && timer === null) timer = setTimeout(refresh, interval);
  }

  toggle.addEventListener("click", () => {
    paused = !paused;
    sessionStorage.setItem(PAUSED_KEY, paused ? "1" : "0");
    if (paused && timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    show(paused ? "Paused" : "Resumed");
    schedule();
  });
  show(paused ? "Paused" : "");
  schedule();
})();
