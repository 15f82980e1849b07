"""Watching jobs on the async server: long-polls and event streams hold no thread."""

import threading
import time

from tests.api.test_contract import submit


def test_health_answers_within_a_second_while_100_long_polls_wait(api, make_user):
    """The starvation case: waiting watchers must not take the threads the rest of the API needs."""
    _, token = make_user()
    job = submit(api, token).body
    polls = [
        threading.Thread(
            target=api.call,
            args=("GET", f"/api/jobs/{job['id']}/?wait=8"),
            kwargs={"token": token, "timeout": 20},
            daemon=True,
        )
        for _ in range(100)
    ]
    for poll in polls:
        poll.start()
    time.sleep(1.5)  # every long-poll is in and waiting

    started = time.monotonic()
    health = api.call("GET", "/api/health/", timeout=10)
    took = time.monotonic() - started

    assert health.status == 200
    assert took < 1, f"health took {took:.2f} s behind 100 waiting long-polls"
