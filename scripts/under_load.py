"""Run a command (the test suite) while two processes burn a CPU each, as a busy machine would.

    python scripts/under_load.py .venv/bin/pytest -q      # make test-under-load

A test that passes on a quiet machine and fails on a busy one asserts timing luck, not a
promise. On this project's 2-core machines two burners leave the suite about half the CPU it
gets alone, so hand-offs to worker children, heartbeats and polls all take longer. The
burners run at the suite's own priority (no nice), end with the command, and the command's
exit status is this script's.
"""

import os
import signal
import subprocess
import sys
import time

BURNERS = int(os.environ.get("BURNERS", "2"))
SPIN = "while True: pass"


def main(command: list[str]) -> int:
    if not command:
        raise SystemExit("usage: under_load.py COMMAND [ARGS...]")
    burners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(BURNERS)]
    started = time.monotonic()
    try:
        status = subprocess.call(command)
    finally:
        for burner in burners:
            burner.send_signal(signal.SIGKILL)
            burner.wait()
    print(
        f"under_load: {' '.join(command)} exited {status} after "
        f"{time.monotonic() - started:.0f} s beside {BURNERS} CPU burners",
        flush=True,
    )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
