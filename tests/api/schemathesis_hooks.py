"""Hooks for the schemathesis command line (SCHEMATHESIS_HOOKS) that tests/api/test_fuzz.py runs."""

from typing import Any

import schemathesis

# A long-poll may be held up to 30 s; generated waits are cut to this to keep the run short.
LONGEST_WAIT = 0.1
# jobqueue.api.schema.MAX_WAIT_SECONDS (not imported: this process has no Django settings).
MAX_WAIT_SECONDS = 30


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """A valid ``?wait=`` above LONGEST_WAIT becomes LONGEST_WAIT, in every phase (the
    coverage phase sends it as text); invalid ones are sent as made, to be answered 400."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, bool) or not isinstance(wait, str | int | float):
        return
    try:
        seconds = float(wait)
    except ValueError:
        return
    if LONGEST_WAIT < seconds <= MAX_WAIT_SECONDS:
        case.query["wait"] = LONGEST_WAIT
