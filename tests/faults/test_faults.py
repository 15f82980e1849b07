"""Black-box fault tests: real workers, a real PostgreSQL we own, faults from outside.

They assert only what the queue promises to its users (no job lost, one run
at a time), read from the queue's rows and the recording task's diary, so
they hold for any worker implementation that keeps those promises.
"""

import random
import time

import psutil
import pytest

from bench import recording
from bench.fault_checks import Findings
from bench.fault_workers import LEASE, Worker
from tests.conftest import wait_until
from tests.faults.conftest import FaultDatabase
from tests.proxy import TcpProxy

pytestmark = pytest.mark.faults


def mixed_jobs(n_short: int, n_long: int, seed: int) -> list[tuple[int, float]]:
    """Short jobs (5-50 ms) and some long enough (0.5-1.5 s) to be caught mid-run by a fault."""
    rng = random.Random(seed)
    jobs = [(i, rng.uniform(0.005, 0.05)) for i in range(n_short)]
    jobs += [(n_short + i, rng.uniform(0.5, 1.5)) for i in range(n_long)]
    rng.shuffle(jobs)
    return jobs


def report(what: str, findings: Findings) -> None:
    print(
        f"\n{what}: {findings.jobs} jobs {findings.by_status}, {findings.runs} runs; "
        f"lost={len(findings.lost)} overlapped={len(findings.overlapped)} "
        f"(longest {findings.overlap_seconds:.2f} s) completed-twice={len(findings.repeated)} "
        f"wrong={len(findings.wrong)}"
    )


def test_database_restart_while_jobs_run(owned_pg, fault_db, start_fault_worker):
    """The server restarts (fast shutdown: every session is terminated) twice under load."""
    ids = fault_db.enqueue(mixed_jobs(300, 30, seed=1))
    pids = [start_fault_worker(fault_db.url, record_url=fault_db.record_url).pid for _ in range(2)]
    for _ in range(2):
        wait_until(lambda: len(fault_db.running()) >= 2, 30, "jobs are running")
        owned_pg.restart()
        # The next restart finds the workers back: both heart-beat on the new server.
        back = fault_db.server_started_at()
        wait_until(
            lambda since=back: fault_db.beating_since(pids, since) == 2, 60, "both workers are back"
        )
    fault_db.wait_drained(ids, timeout=120)

    findings = fault_db.examine(ids)
    report("database restarts", findings)
    assert findings.lost == []
    assert findings.wrong == []


def test_connection_cut_mid_run(fault_db, start_fault_worker, proxy_to):
    """Every worker connection is reset (RST) three times while jobs run: a flaky network."""
    proxy = proxy_to()
    ids = fault_db.enqueue(mixed_jobs(300, 30, seed=2))
    workers = [
        start_fault_worker(fault_db.url_via(proxy), record_url=fault_db.record_url)
        for _ in range(2)
    ]
    for _ in range(3):
        wait_until(lambda: len(fault_db.running()) >= 2, 30, "jobs are running")
        assert proxy.connections > 0
        proxy.cut()
        # The next cut finds the workers reconnected: a heartbeat that began after this cut
        # (the cluster's clock) came over a new connection.
        cut_at = fault_db.now()
        wait_until(
            lambda since=cut_at: fault_db.beating_since([w.pid for w in workers], since) == 2,
            60,
            "both workers reconnected through the proxy",
        )
    fault_db.wait_drained(ids, timeout=120)

    findings = fault_db.examine(ids)
    report("connection cuts", findings)
    assert findings.lost == []
    assert findings.wrong == []
    assert findings.overlapped == []


@pytest.fixture(scope="module")
def blackhole_outcome(owned_pg, tmp_path_factory):
    """One worker's network goes silent for twice the lease, mid-job, then heals.

    Worker A (through the proxy) runs two 8 s jobs; worker B (direct) is
    there to rescue them once A's heartbeats stop. Before self-fencing, A's
    children ran on through the silence, so B's rescue ran the jobs a second
    time at once; now A stops them before its lease runs out. Run once, judged
    by the tests below.
    """
    owned_pg.clone("t_blackhole")
    db = FaultDatabase(owned_pg, "t_blackhole")
    with db.connect() as conn:
        recording.create_table(conn)
    proxy = TcpProxy(("127.0.0.1", owned_pg.port))
    logs = tmp_path_factory.mktemp("blackhole")
    workers = []
    try:
        ids = db.enqueue([(1, 8.0), (2, 8.0)])
        a = Worker(db.url_via(proxy), record_url=db.record_url, log=logs / "a.log")
        workers.append(a)
        wait_until(
            lambda: sorted(s for _, _, s in db.running()) == [a.pid, a.pid], 30, "A runs both jobs"
        )
        b_from = db.now()
        b = Worker(db.url, record_url=db.record_url, log=logs / "b.log")
        workers.append(b)
        wait_until(lambda: db.beating_since([b.pid], b_from) == 1, 30, "B is up and heart-beating")
        silent_from = db.now()
        proxy.blackhole()
        # The silence lasts twice the lease on the cluster's clock, the one B's rescue reads.
        db.wait_past(silent_from, 2 * LEASE, "the black hole lasted twice the lease")
        a_children_alive = len(a.children())
        proxy.restore()
        db.wait_drained(ids, timeout=60)
        with db.connect() as conn:
            # How long A's runs went on into the silence: a self-fencing worker stops them
            # before its lease runs out, i.e. under LEASE seconds.
            ran_on = conn.execute(
                "SELECT extract(epoch FROM max(coalesce(finished_at, last_seen)) - %s) "
                "FROM soak_run WHERE supervisor_pid = %s AND started_at < %s",
                [silent_from, a.pid, silent_from],
            ).fetchone()[0]
        print(f"\nblack hole of {2 * LEASE:g} s (lease {LEASE:g} s): A's children alive at its "
              f"end: {a_children_alive}; A's runs went on {float(ran_on):.1f} s "
              "into the silence")  # fmt: skip
        findings = db.examine(ids)
        report("black hole past the lease", findings)
        said = [line for line in a.output().splitlines() if " INFO " not in line]
        print("what A logged beyond INFO:", *(said[-10:] or ["(nothing)"]), sep="\n  ")
        return findings, float(ran_on)
    finally:
        for worker in workers:
            worker.close(timeout=5)
        proxy.close()


def test_blackhole_past_the_lease_loses_no_job(blackhole_outcome):
    findings, _ = blackhole_outcome
    assert findings.lost == []
    assert findings.wrong == []


def test_blackhole_past_the_lease_runs_no_job_twice_at_once(blackhole_outcome):
    findings, ran_on = blackhole_outcome
    assert findings.overlapped == []
    assert ran_on < LEASE, f"A's jobs ran {ran_on:.1f} s into the silence, past the lease"


def test_database_down_longer_than_the_lease(owned_pg, fault_db, start_fault_worker):
    """The server is down for twice the lease while jobs run on two workers: each stops
    its running jobs before the lease could run out, and when the server is back no
    worker rescues another's jobs while that one is still reconnecting (no rescue
    within a lease of a reconnection). Nothing is lost or run twice at once, and no
    supervisor spins while it waits (outcomes waiting, reconnect backoff)."""
    ids = fault_db.enqueue([(i, 8.0) for i in range(4)] + mixed_jobs(100, 0, seed=3))
    workers = [start_fault_worker(fault_db.url, record_url=fault_db.record_url) for _ in range(2)]
    wait_until(lambda: len(fault_db.running()) >= 4, 30, "four long jobs are running")
    busy_children = {child for _, child, _ in fault_db.running()}
    cpu_before = [_cpu_seconds(w.pid) for w in workers]
    down_from = fault_db.now()
    owned_pg.stop()
    down_for = 2 * LEASE
    # The fault's duration. With the server down its clock cannot be read: the host's (the
    # same clock, on this machine) times the outage, and the new server's start time checks
    # it afterwards. A busy host may make it longer, never shorter.
    stopped = time.monotonic()
    time.sleep(down_for)
    cpu = [_cpu_seconds(w.pid) - b for w, b in zip(workers, cpu_before, strict=True)]
    cpu_over = time.monotonic() - stopped
    still_running = [pid for pid in busy_children if _alive(pid)]
    owned_pg.start()
    down = (fault_db.server_started_at() - down_from).total_seconds()
    fault_db.wait_drained(ids, timeout=120)

    findings = fault_db.examine(ids)
    report("database down past the lease", findings)
    assert down >= down_for, f"the server was down {down:.1f} s, not past the lease"
    assert still_running == [], "children ran their jobs on past the lease"
    assert max(cpu) < 0.25 * cpu_over, f"a supervisor spun while the database was down: {cpu}"
    assert findings.lost == []
    assert findings.wrong == []
    assert findings.overlapped == []


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process (a supervisor), children not included."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
