"""Each peer's own virtual environment under bench/.venvs/, created and filled by pip.

Installed once and reused while its requirements are unchanged (a stamp file
records them), so a second run of the suite does not reach PyPI again.
"""

import json
import subprocess
import sys
from importlib import metadata

from bench.systems import System

STAMP = ".bench-requirements"


def ensure(system: System) -> None:
    """Create and fill the system's venv; raises RuntimeError saying why it could not."""
    if system.is_ours:
        return
    stamp = system.venv / STAMP
    wanted = "\n".join(system.packages)
    if system.python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    system.venv.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", "--clear", str(system.venv)], "create venv")
    _run(
        [str(system.python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *system.packages],
        "pip install " + " ".join(system.packages),
    )  # fmt: skip
    stamp.write_text(wanted)


def versions(system: System) -> dict[str, str]:
    """Installed versions of the distributions the report names."""
    if system.is_ours:
        found = {}
        for name in system.versions_of:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                found[name] = "?"
        return found
    code = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: out[n] = '?'\n"
        "print(json.dumps(out))"
    )
    proc = subprocess.run(
        [str(system.python), "-c", code, *system.versions_of],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"{what} failed: {tail[0][:200]}")
