"""Demo tasks for trying jobqueue: exposed to the API in development settings.

Their dotted paths (``demo.echo`` ...) are also their API names.
"""

import asyncio
import os
import signal
import time
import urllib.request
from typing import Any

from django.tasks import task

from jobqueue import progress as report_progress


@task(max_attempts=1)
def echo(**kwargs: Any) -> dict[str, Any]:
    """Return the keyword arguments it was given."""
    return kwargs


@task(timeout=3600)
def sleep(seconds: float = 5) -> dict[str, float]:
    """Sleep ``seconds``, reporting progress (and checking for cancellation) each second."""
    if not 0 <= seconds <= 3600:
        raise ValueError(f"seconds must be between 0 and 3600, got {seconds}")
    started = time.monotonic()
    while (done := time.monotonic() - started) < seconds:
        report_progress(percent=100 * done / seconds, message=f"slept {done:.0f} of {seconds:g} s")
        time.sleep(min(1.0, seconds - done))
    report_progress(percent=100, message=f"slept {seconds:g} s")
    return {"slept": seconds}


@task(max_attempts=1)
def fail(message: str = "demo failure") -> None:
    """Raise RuntimeError with ``message``."""
    raise RuntimeError(message)


@task(max_attempts=1)
def crash(how: str = "exit") -> None:
    """Kill its own process: ``exit`` (os._exit(1)), ``kill`` (SIGKILL) or ``segfault``."""
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segfault":
        import ctypes

        ctypes.string_at(0)
    os._exit(1)


STAGES = ["download", "parse", "transform", "score", "upload"]


@task(timeout=3600)
def progress(steps: int = 5, step_seconds: float = 1.0) -> dict[str, int]:
    """A multi-stage pipeline: ``steps`` steps of ``step_seconds`` each, with progress messages."""
    if not 1 <= steps <= 1000 or not 0 <= step_seconds <= 60:
        raise ValueError("steps must be 1-1000 and step_seconds 0-60")
    for i in range(steps):
        stage = STAGES[i * len(STAGES) // steps]
        report_progress(percent=100 * i / steps, message=f"step {i + 1} of {steps}: {stage}")
        time.sleep(step_seconds)
    report_progress(percent=100, message=f"done: {steps} steps")
    return {"steps": steps}


@task(execution="async", timeout=600)
async def wait(seconds: float = 0.1) -> dict[str, float]:
    """An I/O-bound job in async mode: await ``seconds`` (a stand-in for an HTTP call)."""
    if not 0 <= seconds <= 600:
        raise ValueError(f"seconds must be between 0 and 600, got {seconds}")
    await asyncio.sleep(seconds)
    return {"waited": seconds}


@task(execution="thread", timeout=600)
def fetch(url_or_delay: str | float = 0.1) -> dict[str, Any]:
    """An I/O-bound job in thread mode: GET an http(s) URL, or block ``url_or_delay`` seconds.

    Not exposed to the API: fetching a URL a client names is a request forgery risk.
    """
    if isinstance(url_or_delay, int | float):
        if not 0 <= url_or_delay <= 600:
            raise ValueError(f"delay must be between 0 and 600, got {url_or_delay}")
        time.sleep(url_or_delay)
        return {"waited": url_or_delay}
    if not url_or_delay.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url_or_delay!r}")
    with urllib.request.urlopen(url_or_delay, timeout=30) as response:
        body = response.read()
    return {"url": url_or_delay, "status": response.status, "bytes": len(body)}
