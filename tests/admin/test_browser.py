"""Headless Chromium against a real server and a real worker: what staff and owners see.

Screenshots go to test-output/screenshots/ (kept as CI artefacts).
"""

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from jobqueue.models import Job, JobStatus
from tests.conftest import ROOT, WORKER_ENV, database_url, wait_until

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-output" / "screenshots"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
    ),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """`manage.py runserver` (threaded, serves static files) on the test database."""
    port = free_port()
    env = {**os.environ, **WORKER_ENV, "DATABASE_URL": database_url(), "DJANGO_DEBUG": "1"}
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/accounts/login/", timeout=1).status == 200
        except OSError:
            return False

    try:
        wait_until(up, 60, "the server answers")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    # Playwright's sync API runs an event loop in this thread; the test's ORM calls are sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def login(browser, server: str) -> Callable:
    """A page logged in as a new user; staff users log in through the admin's form."""

    def make(username: str, *perms: str, superuser: bool = False, staff: bool = True):
        user = User.objects.create_user(username, password="pw-12345", is_staff=staff)
        user.is_superuser = superuser
        user.save()
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="jobqueue", codename__in=perms)
        )
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.set_default_timeout(20_000)
        page.goto(f"{server}/admin/login/" if staff else f"{server}/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", "pw-12345")
        page.click("[type=submit]")
        page.wait_for_load_state()
        return page, user

    return make


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def shots(page, name: str) -> None:
    """``name`` at 1,400 and 1,920 px wide, in light and dark mode (the admin follows the
    browser's colour scheme), then the page as it was."""
    viewport = page.viewport_size
    for width in (1400, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            shot(page, f"{name}-{width}-{scheme}")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(viewport)


def lost_job() -> Job:
    """A demo.echo job that failed when its worker died: retrying it will succeed."""
    now = timezone.now()
    return Job.objects.create(
        task="demo.echo",
        kwargs={"report": "monthly"},
        status=JobStatus.FAILED,
        attempts=1,
        max_attempts=1,
        started_at=now - timedelta(seconds=40),
        finished_at=now,
        errors=[
            {
                "attempt": 1,
                "type": "jobqueue.exceptions.WorkerLost",
                "message": "worker 7 stopped heart-beating (lease 30 s)",
                "traceback": "",
                "at": now.isoformat(),
            }
        ],
    )


def test_staff_filter_retry_until_success_and_purge(login, server, start_worker) -> None:
    failing = [
        Job.objects.create(task="demo.fail", kwargs={"message": f"bad {i}"}, max_attempts=1)
        for i in range(2)
    ]
    start_worker("--concurrency", "2")
    wait_until(
        lambda: Job.objects.filter(status=JobStatus.FAILED).count() == 2,
        60,
        "the demo.fail jobs failed",
    )
    job = lost_job()
    page, _ = login("boss", superuser=True)

    page.goto(f"{server}/admin/jobqueue/job/")
    page.click("#changelist-filter a:text-is('Failed')")
    page.wait_for_url(re.compile(r"status=failed"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    shots(page, "admin-list-failed")

    page.click(f"#result_list a[href*='/{job.pk}/change/']")
    page.wait_for_url(re.compile(rf"/{job.pk}/change/"))
    assert "stopped heart-beating" in page.inner_text("body")
    shots(page, "admin-job-detail-failed")
    page.click("#jq-retry")
    assert f"Job {job.pk} re-queued." in page.inner_text(".messagelist")
    page.click("a.historylink")  # the audit trail: who retried it, and when
    assert "Retried (re-queued) from the job's page." in page.inner_text("#change-history")
    assert "boss" in page.inner_text("#change-history")
    shot(page, "admin-job-history")
    page.go_back()

    def succeeded_on_page() -> bool:
        page.reload()
        return "Succeeded" in page.inner_text("fieldset")

    wait_until(succeeded_on_page, 60, "the retried job shows as succeeded")
    assert "&quot;report&quot;" in page.content() or '"report": "monthly"' in page.inner_text(
        "body"
    )
    shot(page, "admin-job-detail-succeeded")

    page.goto(f"{server}/admin/jobqueue/job/?status=failed")
    for failed in failing:
        page.check(f"input.action-select[value='{failed.pk}']")
    page.select_option("select[name=action]", "purge_jobs")
    page.click("button[name=index]")
    # A confirmation page first, with the counts per status and queue; nothing deleted yet.
    assert "This will purge 2 jobs" in page.inner_text("#jq-confirm-summary")
    assert page.inner_text("#jq-confirm-counts tbody").split() == ["failed", "default", "2", "yes"]
    assert Job.objects.filter(pk__in=[f.pk for f in failing]).count() == 2
    shots(page, "admin-purge-confirmation")
    page.click("#jq-confirm")
    assert "Purged 2 finished jobs" in page.inner_text(".messagelist")
    shot(page, "admin-after-purge")
    assert not Job.objects.filter(pk__in=[f.pk for f in failing]).exists()

    page.goto(f"{server}/admin/jobqueue/job/health/")
    assert page.locator("svg.jq-chart rect.jq-bar-ok").count() >= 1
    assert page.locator("svg.jq-chart .jq-x-axis text").count() == 7 * 3  # 3 time axes
    assert "jobs / min" in page.text_content("svg.jq-chart .jq-y-axis")
    assert "demo.echo" in page.inner_text("#jq-timings-task")
    assert "live" in page.inner_text("#jq-workers")
    shots(page, "admin-queue-health")


def test_staff_without_retry_permission_see_no_retry(login, server) -> None:
    job = lost_job()
    page, _ = login("viewer", "view_job", "cancel_job")

    page.goto(f"{server}/admin/jobqueue/job/")
    options = page.locator("select[name=action] option").all_inner_texts()
    assert any("Cancel" in o for o in options)
    assert not any("Retry" in o for o in options)
    page.goto(f"{server}/admin/jobqueue/job/{job.pk}/change/")
    assert page.locator("#jq-retry").count() == 0
    shot(page, "admin-job-detail-no-retry-permission")


def test_live_job_page_shows_progress_moving_then_the_result(login, server, start_worker) -> None:
    page, user = login("owner", staff=False)
    job = Job.objects.create(
        task="demo.progress", kwargs={"steps": 5, "step_seconds": 1}, owner=user
    )
    start_worker()

    page.goto(f"{server}/jobs/{job.pk}/")
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while page.get_attribute("#jq-job", "data-state") != "succeeded":
        assert time.monotonic() < deadline, f"job never finished on the page; saw {seen}"
        percent = page.inner_text("[data-field=percent]")
        if not seen or seen[-1] != percent:
            seen.append(percent)
            if len(seen) == 3:
                shot(page, "live-job-page-running")
        time.sleep(0.1)

    assert len({p for p in seen if p not in ("0%", "100%")}) >= 2, seen
    assert '"steps": 5' in page.inner_text("[data-field=result]")
    assert page.inner_text("[data-field=percent]") == "100%"
    assert not page.is_visible("[data-field=cancel]")
    shot(page, "live-job-page-done")


def test_live_job_page_cancel_button_stops_the_job(login, server, start_worker) -> None:
    page, user = login("owner2", staff=False)
    job = Job.objects.create(task="demo.sleep", kwargs={"seconds": 30}, owner=user)
    start_worker()
    page.goto(f"{server}/jobs/{job.pk}/")
    page.wait_for_function("document.querySelector('#jq-job').dataset.state === 'running'")

    page.click("[data-field=cancel]")

    page.wait_for_function("document.querySelector('#jq-job').dataset.state === 'cancelled'")
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert page.inner_text("[data-field=cancelled]").startswith("Cancelled by you at ")
    assert not page.is_visible("[data-field=error-box]"), "a cancel is not shown as an error"
    shot(page, "live-job-page-cancelled")


class AsgiServer:
    """The production server (gunicorn, uvicorn workers, project.asgi) on a port of its own,
    which a test can restart."""

    def __init__(self, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = log.open("ab")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, **WORKER_ENV, "DATABASE_URL": database_url(), "DJANGO_DEBUG": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "project.asgi:application",
                "--bind", self.url.removeprefix("http://"), "--workers", "1",
                "--worker-class", "project.asgi_worker.UvicornWorker", "--graceful-timeout", "2",
            ],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def up() -> bool:
            try:
                return urllib.request.urlopen(f"{self.url}/api/health/", timeout=1).status == 200
            except OSError:
                return False

        wait_until(up, 60, "the ASGI server answers")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def asgi_server(transactional_db: None, tmp_path: Path) -> Iterator[AsgiServer]:
    server = AsgiServer(tmp_path / "asgi.log")
    server.start()
    yield server
    server.stop()
    server.log.close()


def test_live_job_page_follows_the_event_stream_across_a_server_restart(
    browser, asgi_server, start_worker
) -> None:
    """The page listens with EventSource; the server restarts mid-job; the page reconnects
    by itself (no reload) and shows the final result."""
    user = User.objects.create_user("watcher", password="pw-12345")
    job = Job.objects.create(
        task="demo.progress", kwargs={"steps": 6, "step_seconds": 1}, owner=user
    )
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(20_000)
    page.goto(f"{asgi_server.url}/accounts/login/")
    page.fill("input[name=username]", "watcher")
    page.fill("input[name=password]", "pw-12345")
    page.click("[type=submit]")
    page.wait_for_load_state()
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events/" in r.url else None)
    page.goto(f"{asgi_server.url}/jobs/{job.pk}/")
    page.wait_for_function("document.querySelector('#jq-job').dataset.transport === 'events'")
    assert page.inner_text("[data-field=position]") == "next in line"
    page.evaluate("window.sameDocument = true")

    start_worker()
    page.wait_for_function("document.querySelector('#jq-job').dataset.state === 'running'")
    assert page.inner_text("[data-field=started]") != "—"
    shot(page, "live-job-page-streaming")
    asgi_server.stop()
    asgi_server.start()

    page.wait_for_function(
        "document.querySelector('#jq-job').dataset.state === 'succeeded'", timeout=60_000
    )
    assert page.evaluate("window.sameDocument") is True, "the page was reloaded"
    assert len(streams) >= 2, f"no reconnection to the stream: {streams}"
    assert page.get_attribute("#jq-job", "data-transport") == "events"
    assert '"steps": 6' in page.inner_text("[data-field=result]")
    assert page.inner_text("[data-field=elapsed]").endswith(" s")
    assert not page.is_visible("[data-field=queue-box]")


def job_body(job_id: int, status: str) -> str:
    progress = {"percent": None, "message": "", "updated_at": None}
    body = {"id": job_id, "status": status, "progress": progress, "attempts": 1}
    return json.dumps({**body, "cancel_requested": False})


IMPORT_POLL_JOB = 'const { pollJob } = await import("/static/jobqueue/pollJob.js");'


def test_poll_job_backs_off_on_server_errors_then_follows_the_job_to_its_end(
    browser, server
) -> None:
    """pollJob.js against a server that fails three times: each retry waits longer
    (jittered: 0.5-1 s, 1-2 s, 2-4 s), then the finished job resolves ``done``."""
    page = browser.new_page()
    page.goto(f"{server}/accounts/login/")
    hits: list[float] = []

    def answer(route) -> None:
        hits.append(time.monotonic())
        if len(hits) <= 3:
            route.fulfill(status=503, body="down for a moment")
        else:
            done = job_body(7, "succeeded")
            route.fulfill(status=200, content_type="application/json", body=done)

    page.route("**/api/jobs/7/*", answer)
    status = page.evaluate(
        f"async () => {{ {IMPORT_POLL_JOB} return (await pollJob(7).done).status; }}"
    )

    assert status == "succeeded"
    gaps = [later - earlier for earlier, later in itertools.pairwise(hits)]
    assert len(gaps) == 3, gaps
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95 and gaps[2] >= 1.95, gaps


def test_poll_job_abort_stops_polling_and_resolves_done_with_null(browser, server) -> None:
    """Requests are counted as the page sends them (a wrapped fetch), on the page's clock:
    the abort comes once the poll has asked twice, and "no request after it" is judged
    once a second poll, started at the abort, has asked four times (two of its 1 s pauses
    between answers at once: the aborted one would have asked again within one)."""
    page = browser.new_page()
    page.goto(f"{server}/accounts/login/")

    def answer(route) -> None:  # jobs that never finish, answered at once
        job_id = int(route.request.url.split("/api/jobs/")[1].split("/")[0])
        route.fulfill(status=200, content_type="application/json", body=job_body(job_id, "running"))

    page.route("**/api/jobs/8/*", answer)
    page.route("**/api/jobs/9/*", answer)
    seen = page.evaluate(
        "async () => {"
        f"  {IMPORT_POLL_JOB}"
        "  const asked = {};"
        "  const realFetch = window.fetch;"
        "  window.fetch = (url, ...rest) => {"
        "    const id = (String(url).match(/jobs\\/(\\d+)\\//) || [])[1];"
        "    asked[id] = (asked[id] || 0) + 1;"
        "    return realFetch(url, ...rest);"
        "  };"
        "  const until = async (check) => {"
        "    const deadline = Date.now() + 30000;"
        "    while (!check()) {"
        "      if (Date.now() > deadline) return false;"
        "      await new Promise((r) => setTimeout(r, 20));"
        "    }"
        "    return true;"
        "  };"
        "  const poll = pollJob(8);"
        "  let done = 'still polling';"
        "  poll.done.then((job) => { done = job; });"
        "  const polled = await until(() => (asked[8] || 0) >= 2);"
        "  poll.abort();"
        "  const atAbort = asked[8] || 0;"
        "  const control = pollJob(9);"
        "  const controlPolled = await until(() => (asked[9] || 0) >= 4);"
        "  control.abort();"
        "  window.fetch = realFetch;"
        "  return { polled, atAbort, controlPolled, after: asked[8] || 0, done };"
        "}"
    )

    assert seen["polled"], f"it never polled twice: {seen}"
    assert seen["controlPolled"], f"the second poll never asked four times: {seen}"
    assert seen["done"] is None, seen
    assert seen["after"] == seen["atAbort"], f"it polled after the abort: {seen}"


def test_api_docs_list_the_operations_with_the_network_blocked(browser, server) -> None:
    """Swagger UI comes from drf-spectacular-sidecar's static files, not a CDN."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    outside: list[str] = []

    def only_our_server(route) -> None:
        if route.request.url.startswith(server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_our_server)
    page.goto(f"{server}/api/docs/")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)

    paths = {p.strip() for p in page.locator(".opblock-summary-path").all_inner_texts()}
    assert {"/api/jobs/", "/api/jobs/{id}/", "/api/jobs/{id}/cancel/", "/api/health/"} <= paths
    assert outside == []
    shots(page, "api-docs")


def test_the_job_list_follows_a_job_from_queued_to_succeeded_without_a_reload(
    login, server, start_worker
) -> None:
    page, _ = login("watcher", superuser=True)
    job = Job.objects.create(task="demo.sleep", kwargs={"seconds": 6})
    page.goto(f"{server}/admin/jobqueue/job/")
    page.evaluate("window.jqSamePage = true")  # gone if the page reloads
    status = page.locator(f"#result_list tr:has(a[href$='/{job.pk}/change/']) .jq-status")
    sync_api.expect(status).to_have_text("Queued")

    start_worker()

    sync_api.expect(status).to_have_text("Running", timeout=30_000)
    shots(page, "admin-list-live")
    sync_api.expect(status).to_have_text("Succeeded", timeout=30_000)
    assert page.evaluate("window.jqSamePage") is True
    sync_api.expect(page.locator("#jq-live-status")).to_contain_text("nothing is running")
    page.click("#jq-live-toggle")
    sync_api.expect(page.locator("#jq-live-toggle")).to_have_text("Resume live updates")
