"""The soak's reading of its fault log: which repeated completions a fault explains."""

from datetime import UTC, datetime

from bench.fault_checks import Repeat
from bench.soak import Fault, in_window

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def repeat(finished: float, restarted: float, supervisor: int = 100) -> Repeat:
    return Repeat(
        job_id=1,
        first_supervisor=supervisor,
        first_finished=datetime.fromtimestamp(T0 + finished, UTC),
        next_started=datetime.fromtimestamp(T0 + restarted, UTC),
    )


def fault(at: float, kind: str, supervisor: int | None) -> Fault:
    return Fault(T0 + at, kind, supervisor, "")


def test_a_fault_on_the_first_runs_supervisor_between_finish_and_rerun_explains_it() -> None:
    assert in_window(repeat(1, 5), [fault(2, "kill9-supervisor", 100)])
    assert in_window(repeat(1, 5), [fault(2, "sigstop", 100)])


def test_a_fault_on_another_supervisor_or_outside_the_window_does_not() -> None:
    assert not in_window(repeat(1, 5), [fault(2, "kill9-supervisor", 200)])
    assert not in_window(repeat(1, 5), [fault(0.5, "kill9-supervisor", 100)])
    assert not in_window(repeat(1, 5), [fault(6, "sigstop", 100)])


def test_faults_that_hit_every_worker_explain_it_whoever_ran_it() -> None:
    assert in_window(repeat(1, 5), [fault(3, "db-restart", None)])
    assert in_window(repeat(1, 5), [fault(3, "conn-kill", None)])
