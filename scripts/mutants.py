"""Curated mutants: each README promise removed or weakened, one small patch at a time.

For every mutant in ``scripts/mutant_list.py`` this script applies the patch (an exact
string replacement) to a throwaway copy of the working tree, runs only that mutant's
guarding tests there, and expects them to fail. The real tree is never written.

    python scripts/mutants.py                    # every mutant
    python scripts/mutants.py -k ack skip-locked # mutants whose name contains a word
    python scripts/mutants.py --budget 900       # stop starting mutants after 900 s
    python scripts/mutants.py --list             # the table of mutants, without running
    python scripts/mutants.py --check            # only: does every mutant still apply?
    python scripts/mutants.py --jobs 2           # two mutants at a time (needs DATABASE_URL)

Outcomes: ``killed`` (a guarding test failed, or the tests ran past the per-mutant time
limit), ``SURVIVED`` (the guarding tests passed with the promise broken), ``STALE`` (the
old text is not in the file exactly once: the code changed, update the mutant), ``ERROR``
(pytest could not run the tests: a wrong node id, a collection error) and ``NOT RUN``
(the time budget ran out first). Anything but ``killed`` makes the exit status non-zero.

With ``--jobs N`` the mutants run in N lanes at once, each lane with a copy of the tree of
its own and a database of its own (DATABASE_URL's name plus ``_m0``, ``_m1``, ...), so two
mutants never share a file or a row. Most guarding tests wait on real worker processes, so
two lanes on two cores take about half the time. A lane's load can only slow a test down or
time it out, which counts as killed, never as survived: a survivor is still a survivor.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from mutant_list import MUTANTS, Mutant  # noqa: E402

# What the copy leaves out: environments (the peers' in bench/.venvs too), caches, databases.
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".pgdata", "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", "test-output", ".venvs", "*.egg-info",
)  # fmt: skip
# pytest exit status 1: tests ran and at least one failed. Anything else but 0 is ERROR.
PYTEST_FAILED = 1


@dataclass(frozen=True, slots=True)
class Result:
    mutant: Mutant
    outcome: str  # killed, SURVIVED, STALE, ERROR, NOT RUN
    seconds: float
    detail: str = ""


def check(mutant: Mutant, tree: Path) -> str | None:
    """Why ``mutant`` cannot be applied to ``tree`` (STALE), or None when it can."""
    path = tree / mutant.file
    if not path.exists():
        return f"{mutant.file} does not exist"
    found = path.read_text().count(mutant.old)
    if found != 1:
        return f"old text found {found} times in {mutant.file}, expected exactly once"
    return None


def copy_env(tree: Path, database_url: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),  # the copy's packages, ahead of the editable install
        "PYTHONDONTWRITEBYTECODE": "1",  # no stale bytecode between two versions of a file
    }
    # The embedded server is the real tree's: one per project, never one per copy.
    env.setdefault("JOBQUEUE_PGDATA", str(ROOT / ".pgdata"))
    # A guarding test that skips proves nothing: it is reported as ERROR below, never turned
    # into a failure (a "kill") by the CI=true hook of tests/conftest.py.
    env.pop("CI", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def lane_database_urls(jobs: int) -> list[str | None]:
    """One database per lane: DATABASE_URL's name with a suffix, or the one database."""
    url = os.environ.get("DATABASE_URL")
    if jobs == 1:
        return [None]
    if not url:
        raise SystemExit("--jobs above 1 needs DATABASE_URL (a database per lane)")
    base, _, query = url.partition("?")
    return [f"{base}_m{i}" + (f"?{query}" if query else "") for i in range(jobs)]


def imports_from(tree: Path, python: str) -> Path:
    """Where the copy's tests import jobqueue from: the copy, or the mutants prove nothing."""
    out = subprocess.run(
        [python, "-c", "import jobqueue; print(jobqueue.__file__)"],
        check=True, cwd=tree, env=copy_env(tree), capture_output=True, text=True,
    )  # fmt: skip
    return Path(out.stdout.strip()).resolve()


def run_one(
    mutant: Mutant, tree: Path, python: str, timeout: float, database_url: str | None = None
) -> Result:
    started = time.monotonic()
    stale = check(mutant, tree)
    if stale:
        return Result(mutant, "STALE", 0.0, stale)
    path = tree / mutant.file
    original = path.read_text()
    path.write_text(original.replace(mutant.old, mutant.new, 1))
    env = copy_env(tree, database_url)
    command = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header"]
    command += list(mutant.tests)
    try:
        proc = subprocess.run(
            command, check=False, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return Result(mutant, "killed", time.monotonic() - started, f"tests ran over {timeout} s")
    finally:
        path.write_text(original)
    seconds = time.monotonic() - started
    tail = _summary(proc.stdout + proc.stderr)
    if proc.returncode == 0 and _skipped(proc.stdout):
        return Result(mutant, "ERROR", seconds, f"a guarding test was skipped: {tail}")
    if proc.returncode == 0:
        return Result(mutant, "SURVIVED", seconds, tail)
    if proc.returncode == PYTEST_FAILED:
        return Result(mutant, "killed", seconds, tail)
    return Result(mutant, "ERROR", seconds, f"pytest exit {proc.returncode}: {tail}")


def _skipped(output: str) -> bool:
    """Whether pytest's final line counts skipped tests."""
    lines = [line for line in output.splitlines() if line.strip()]
    return bool(lines) and " skipped" in lines[-1]


def _summary(output: str) -> str:
    """The line naming the first failed test, or pytest's last line."""
    lines = [line for line in output.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return (failed or lines or [""])[0 if failed else -1][:160]


def make_copy() -> Path:
    """A throwaway copy of the working tree as it is now (uncommitted changes included)."""
    tree = Path(tempfile.mkdtemp(prefix="jobqueue-mutants-")) / "tree"
    shutil.copytree(ROOT, tree, ignore=IGNORED, symlinks=True)
    return tree


def table(results: list[Result]) -> str:
    rows = [("mutant", "outcome", "s", "promise")]
    rows += [(r.mutant.name, r.outcome, f"{r.seconds:.0f}", r.mutant.promise) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(" | ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[3]]))
        if i == 0:
            lines.append("-+-".join("-" * w for w in [*widths, 7]))
    return "\n".join(lines)


def run_all(
    chosen: list[Mutant], *, jobs: int, budget: float | None, timeout: float
) -> list[Result]:
    """Run ``chosen`` in ``jobs`` lanes, in order of the list, each in a free lane's copy."""
    started = time.monotonic()
    python = sys.executable
    lanes = lane_database_urls(jobs)
    trees = [make_copy() for _ in lanes]
    free: list[tuple[Path, str | None]] = list(zip(trees, lanes, strict=True))
    lock = threading.Lock()
    done = 0

    def run_in_a_free_lane(mutant: Mutant) -> Result:
        nonlocal done
        if budget is not None and time.monotonic() - started > budget:
            return Result(mutant, "NOT RUN", 0.0, f"budget of {budget:g} s")
        with lock:
            tree, database_url = free.pop()
        try:
            result = run_one(mutant, tree, python, timeout, database_url)
        finally:
            with lock:
                free.append((tree, database_url))
        with lock:
            done += 1
            print(
                f"[{done}/{len(chosen)}] {mutant.name}: {result.outcome} "
                f"({result.seconds:.0f} s) {result.detail}",
                flush=True,
            )
        return result

    try:
        for tree in trees:
            source = imports_from(tree, python)
            if not source.is_relative_to(tree.resolve()):
                raise SystemExit(f"the copy imports jobqueue from {source}, not from {tree}")
        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            results = list(pool.map(run_in_a_free_lane, chosen))
        # Every copy must be back to the working tree's state after every mutant.
        for tree in trees:
            for mutant in chosen:
                if (tree / mutant.file).read_text() != (ROOT / mutant.file).read_text():
                    raise SystemExit(f"the copy's {mutant.file} was not restored")
    finally:
        for tree in trees:
            shutil.rmtree(tree.parent, ignore_errors=True)

    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", nargs="*", default=[], help="run mutants whose name contains these")
    parser.add_argument("--budget", type=float, default=None, help="seconds; none started after")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per mutant's tests")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (lanes)")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument(
        "--check", action="store_true", help="only report STALE mutants (no tests run)"
    )
    args = parser.parse_args(argv)

    chosen = [m for m in MUTANTS if not args.k or any(k in m.name for k in args.k)]
    if not chosen:
        parser.error(f"no mutant matches {args.k}")
    if args.list:
        for m in chosen:
            print(f"{m.name:32} {m.file:32} {m.promise}")
            for test in m.tests:
                print(f"{'':32}   {test}")
        return 0

    if args.check:
        stale = [(m, why) for m in chosen if (why := check(m, ROOT))]
        for m, why in stale:
            print(f"STALE {m.name}: {why}")
        print(f"{len(chosen) - len(stale)} of {len(chosen)} mutants apply")
        return 1 if stale else 0

    names = [m.name for m in MUTANTS]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        parser.error(f"duplicate mutant names: {sorted(duplicates)}")

    started = time.monotonic()
    results = run_all(chosen, jobs=args.jobs, budget=args.budget, timeout=args.timeout)
    total = time.monotonic() - started
    print()
    print(table(results))
    counts = Counter(r.outcome for r in results)
    print()
    print(
        f"{len(results)} mutants in {total:.0f} s: "
        + ", ".join(f"{n} {o}" for o, n in counts.items())
    )
    bad = [r for r in results if r.outcome != "killed"]
    for r in bad:
        print(f"  {r.outcome}: {r.mutant.name} ({r.mutant.file}): {r.detail}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
