"""Watching jobs on the ASGI server: event streams and long-polls wait as coroutines.

Everything here runs against a real gunicorn with uvicorn workers (``project.asgi``):
the starvation case of the thread-per-waiter server, the stream's contract (the job at
once, each change, the end), ownership, ``Last-Event-ID`` and the fair-use limits.
"""

import contextlib
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from jobqueue import db, queries
from jobqueue.client import read_events
from jobqueue.conf import get_settings
from jobqueue.models import Worker
from tests.api.conftest import API_ENV, Server, start_gunicorn
from tests.api.test_contract import claim_one, submit
from tests.conftest import database_url, wait_until


def open_stream(api: Server, job_id: int, token: str | None, **headers: str) -> Any:
    """The job's event stream (a response to read), or the HTTPError that refused it."""
    sent = {"Accept": "text/event-stream", **headers}
    if token:
        sent["Authorization"] = f"Token {token}"
    request = urllib.request.Request(f"{api.base_url}/api/jobs/{job_id}/events/", headers=sent)
    try:
        return urllib.request.urlopen(request, timeout=20)
    except urllib.error.HTTPError as refused:
        return refused


def report_progress(job_id: int, lease_token: int, percent: float, message: str) -> None:
    with db.connect() as conn, conn.cursor() as cursor:
        queries.report_progress(
            cursor, job_id=job_id, token=lease_token, percent=percent, message=message
        )


def test_health_answers_within_a_second_while_100_long_polls_wait(api, make_user):
    """The starvation case: waiting watchers must not take the threads the rest of the API needs.

    Each user sends one long-poll more than the per-user limit: once that one is refused
    (429), the user's others are in and waiting, which is when health is asked."""
    per_user = get_settings().WATCH_PER_USER  # the server's too: API_ENV leaves it as it is
    users = -(-100 // per_user)
    host, port = api.base_url.removeprefix("http://").split(":")
    statuses: list[int] = []
    sockets: list[socket.socket] = []

    def poll(token: str, job_id: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            conn.connect()
            sockets.append(conn.sock)
            conn.request(
                "GET", f"/api/jobs/{job_id}/?wait=30", headers={"Authorization": f"Token {token}"}
            )
            statuses.append(conn.getresponse().status)
        except OSError:
            pass  # the test is over: its sockets are shut

    polls = []
    for _ in range(users):
        _, token = make_user()
        job = submit(api, token).body
        polls += [threading.Thread(target=poll, args=(token, job["id"]), daemon=True)
                  for _ in range(per_user + 1)]  # fmt: skip
    try:
        for thread in polls:
            thread.start()
        wait_until(
            lambda: len(statuses) >= users, 60, "each user's long-poll over the limit was refused"
        )
        assert statuses == [429] * users, "a long-poll answered before its job changed"

        started = time.monotonic()
        health = api.call("GET", "/api/health/", timeout=10)
        took = time.monotonic() - started
    finally:
        for sock in sockets:  # the waiting long-polls leave (no answer to make at wait's end)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    assert health.status == 200
    assert took < 1, f"health took {took:.2f} s behind {users * per_user} waiting long-polls"


@pytest.mark.slow
def test_stream_sends_the_job_then_each_change_and_ends_when_it_finishes(
    api, make_user, start_worker
):
    _, token = make_user()
    job = submit(api, token, task="demo.progress", kwargs={"steps": 3, "step_seconds": 0.3}).body
    stream = open_stream(api, job["id"], token)
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.headers["Cache-Control"] == "no-cache"
    start_worker("--concurrency", "1")

    events = list(read_events(stream))  # ends by itself once the job has finished

    states = [job for _, job in events]
    assert states[0]["status"] == "queued" and states[0]["id"] == job["id"]
    assert "running" in [s["status"] for s in states]
    messages = [s["progress"]["message"] for s in states if s["progress"]["message"]]
    assert [m.split(":")[0] for m in messages][:3] == [f"step {i} of 3" for i in (1, 2, 3)]
    assert states[-1]["status"] == "succeeded" and states[-1]["result"] == {"steps": 3}
    ids = [event_id for event_id, _ in events]
    assert len(set(ids)) == len(ids), "an event repeated a state already sent"


def test_stream_is_the_owners_and_permitted_staffs_only(api, make_user):
    _, owner = make_user()
    _, stranger = make_user()
    _, staff_with_view = make_user(staff=True, perms=("view_job",))
    _, staff_without = make_user(staff=True)
    job = submit(api, owner).body
    api.call("POST", f"/api/jobs/{job['id']}/cancel/", token=owner)  # finished: streams end

    for token in (owner, staff_with_view):
        stream = open_stream(api, job["id"], token)
        assert stream.status == 200
        [(_, state)] = list(read_events(stream))
        assert state["status"] == "cancelled"
    for token in (stranger, staff_without):
        refused = open_stream(api, job["id"], token)
        assert refused.status == 404
        assert refused.headers["Content-Type"] == "application/json"
    assert open_stream(api, job["id"], None).status == 401
    assert open_stream(api, 987654321, owner).status == 404


def test_last_event_id_resumes_with_the_missed_change_and_repeats_nothing(api, make_user):
    _, token = make_user()
    job = submit(api, token).body
    first = open_stream(api, job["id"], token)
    queued_id, queued = next(read_events(first))
    first.close()
    assert queued["status"] == "queued"

    # A change while the client is away: the reconnection starts with it.
    lease_token = claim_one(Worker.objects.create(hostname="h", pid=1, concurrency=1))
    second = open_stream(api, job["id"], token, **{"Last-Event-ID": queued_id})
    running_id, running = next(read_events(second))
    second.close()
    assert running["status"] == "running"

    # Nothing missed: the reconnection sends nothing until the next change.
    third = open_stream(api, job["id"], token, **{"Last-Event-ID": running_id})
    later = threading.Timer(1, report_progress, (job["id"], lease_token, 50, "half way"))
    later.start()
    started = time.monotonic()
    _, state = next(read_events(third))
    third.close()
    assert time.monotonic() - started >= 0.9, "the state already seen was sent again"
    assert state["progress"]["message"] == "half way"


@contextmanager
def watching_server(tmp_path: Path, **settings: str) -> Iterator[Server]:
    """A server of its own with these JOBQUEUE_WATCH_* settings."""
    env = {**API_ENV, "DATABASE_URL": database_url(), **settings}
    proc, base_url = start_gunicorn(env, tmp_path / "gunicorn.log", threads=4)
    try:
        yield Server(base_url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_watchers_are_limited_per_user_429_and_per_server_503(tmp_path, make_user):
    _, ann = make_user()
    _, bob = make_user()
    _, cy = make_user()
    with watching_server(tmp_path, JOBQUEUE_WATCH_PER_USER="2", JOBQUEUE_WATCH_MAX="3") as server:
        jobs = {token: submit(server, token).body["id"] for token in (ann, bob, cy)}
        held = [open_stream(server, jobs[ann], ann) for _ in range(2)]
        for stream in held:
            next(read_events(stream))  # registered once its first event is out

        too_many = open_stream(server, jobs[ann], ann)
        assert too_many.status == 429 and int(too_many.headers["Retry-After"]) > 0
        poll = server.call("GET", f"/api/jobs/{jobs[ann]}/?wait=5", token=ann)
        assert poll.status == 429, "long-polls count against the same limit"

        bobs = open_stream(server, jobs[bob], bob)
        next(read_events(bobs))
        full = open_stream(server, jobs[cy], cy)
        assert full.status == 503 and int(full.headers["Retry-After"]) > 0
        assert server.call("GET", "/api/health/").status == 200

        # A client that leaves frees its place.
        held.pop().close()
        wait_until(
            lambda: open_stream(server, jobs[ann], ann).status == 200,
            10,
            "a closed stream no longer counts",
        )
        for stream in (*held, bobs):
            stream.close()


@pytest.mark.slow
def test_a_reader_that_stops_reading_is_dropped_not_buffered(tmp_path, make_user):
    """A client that reads nothing while large progress messages pile up is disconnected."""
    _, token = make_user()
    with watching_server(
        tmp_path, JOBQUEUE_WATCH_PER_USER="1", JOBQUEUE_WATCH_SEND_TIMEOUT="1"
    ) as server:
        job = submit(server, token).body
        lease_token = claim_one(Worker.objects.create(hostname="h", pid=1, concurrency=1))
        host, port = server.base_url.removeprefix("http://").split(":")
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((host, int(port)))
        stalled.sendall(
            f"GET /api/jobs/{job['id']}/events/ HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Token {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        # Its first event is out once it is registered (then it reads no more).
        stalled.settimeout(20)
        received = b""
        while b"\n\n" not in received.partition(b"\r\n\r\n")[2]:
            chunk = stalled.recv(4096)
            assert chunk, f"the stream ended before its first event: {received!r}"
            received += chunk
        assert open_stream(server, job["id"], token).status == 429  # the stalled one counts
        big = "x" * 200_000
        for i in range(60):  # 12 MB of events, far more than the socket buffers hold
            report_progress(job["id"], lease_token, i, f"{i} {big}")
        wait_until(
            lambda: open_stream(server, job["id"], token).status == 200,
            20,
            "the stalled reader was dropped and its place freed",
        )
        stalled.close()
