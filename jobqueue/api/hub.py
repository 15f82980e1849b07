"""One LISTEN connection per web process, fanning job changes out to every watcher in it.

Watchers (event streams and ``?wait=`` long-polls, ``jobqueue.api.watching``)
are coroutines that hold no database connection while they wait. The hub's
one asyncio psycopg connection LISTENs on the job events channel (claims,
progress, acks, cancel, retry and rescue NOTIFY it with job ids). When ids
that someone watches arrive, it reads those jobs in one statement on the same
connection, renders each job once, and hands the JSON to its watchers. So the
database sees one connection per web process however many clients watch, and
one read per change however many watch the same job.

A new watcher's job is read once more after it registered: the view read it
before, and a change in between would otherwise go unseen. After a lost
connection, every watched job is read again for the same reason. The reads
on one connection are in commit order, so a watcher never sees a job go back.
"""

import asyncio
import contextlib
import logging
from collections import Counter, deque
from typing import Any, NamedTuple

from jobqueue import db, queries
from jobqueue.api.serializers.jobs import job_data
from jobqueue.api.sql import RowLoader, quoted_columns
from jobqueue.api.stream import WatchGrant, event_id, job_event
from jobqueue.conf import get_settings
from jobqueue.models import Job

logger = logging.getLogger(__name__)

# The hub's connection in pg_stat_activity: one per web process.
APP_NAME = "jobqueue watchers"


class State(NamedTuple):
    """One state of a job, rendered once for all its watchers."""

    data: dict[str, Any]  # the job's JSON, as GET /api/jobs/{id}/ answers it
    id: str  # stream.event_id(data)
    event: bytes  # the server-sent event that carries it


class Watcher:
    """One watcher of one job: the states it has yet to send, at most ``limit`` of them."""

    def __init__(self, grant: WatchGrant, limit: int) -> None:
        self.grant = grant
        self.limit = limit
        # The last state handed over (first: the one the view sent), so none is sent twice.
        self.last_id = grant.seen
        self.dropped = False
        self.closed = False
        self._pending: deque[State] = deque()
        self._ready = asyncio.Event()

    def offer(self, state: State) -> None:
        """Queue a state of the job, unless it is the last one already; drop a slow reader."""
        if self.closed or state.id == self.last_id:
            return
        if len(self._pending) >= self.limit:
            # Buffering without bound would let one stalled client grow the process.
            self.dropped = True
            self.close()
            return
        self.last_id = state.id
        self._pending.append(state)
        self._ready.set()

    def close(self) -> None:
        """End the watch: the client left, it fell behind, or the server is stopping."""
        self.closed = True
        self._ready.set()

    async def changes(self, timeout: float) -> list[State] | None:
        """The states offered since the last call, waiting up to ``timeout`` s for one.

        An empty list when none came in time; None once the watcher is closed.
        """
        if not self._pending and not self.closed:
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        self._ready.clear()
        if self.closed:
            return None
        states = list(self._pending)
        self._pending.clear()
        return states


class JobHub:
    """The process's watchers, by job, and the one connection that tells them of changes."""

    # Seconds the listener waits for a NOTIFY before it reads the jobs of new watchers.
    TICK = 0.05
    # Largest number of jobs read in one statement.
    READ_CHUNK = 1000
    # Longest pause between reconnection attempts after the connection is lost.
    MAX_BACKOFF = 10.0

    def __init__(self, alias: str | None = None) -> None:
        # LISTEN needs a session of its own: behind a transaction pooler, PostgreSQL
        # itself (JOBQUEUE["LISTEN_DATABASE"], from DIRECT_DATABASE_URL), as for workers.
        self.alias = alias or get_settings().LISTEN_DATABASE
        self._watchers: dict[int, set[Watcher]] = {}
        self._per_user: Counter[int] = Counter()
        self._to_read: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._statement: tuple[str, RowLoader] | None = None
        # Watchers dropped for falling behind, since the process started.
        self.dropped = 0

    def __len__(self) -> int:
        return sum(self._per_user.values())

    def watching(self, user_id: int) -> int:
        """How many watchers ``user_id`` holds in this process."""
        return self._per_user[user_id]

    def watch(self, grant: WatchGrant) -> Watcher:
        """Register a watcher of ``grant.job_id``; its job is read again at once."""
        watcher = Watcher(grant, get_settings().WATCH_BUFFER)
        self._watchers.setdefault(grant.job_id, set()).add(watcher)
        self._per_user[grant.user_id] += 1
        self._to_read.add(grant.job_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        watcher.close()
        if watcher.dropped:
            self.dropped += 1
        grant = watcher.grant
        watchers = self._watchers.get(grant.job_id)
        if watchers is not None and watcher in watchers:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[grant.job_id]
            self._per_user[grant.user_id] -= 1
            if not self._per_user[grant.user_id]:
                del self._per_user[grant.user_id]

    async def stop(self) -> None:
        """Close every watcher and the connection (the server is shutting down)."""
        for watchers in list(self._watchers.values()):
            for watcher in list(watchers):
                watcher.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with await db.connect_async(self.alias, application_name=APP_NAME) as conn:
                    await conn.execute(f"LISTEN {queries.EVENTS_CHANNEL}")
                    backoff = 0.5
                    # Changes made while nobody listened went unheard: read every watched job.
                    self._to_read.update(self._watchers)
                    while True:
                        if self._to_read:
                            await self._read(conn)
                        async for notify in conn.notifies(timeout=self.TICK, stop_after=1):
                            self._changed(notify.payload)
            except Exception:
                logger.exception("the job event hub lost its connection; reconnecting")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.MAX_BACKOFF)

    def _changed(self, payload: str) -> None:
        """Note the watched ids among ``payload``'s (comma-separated) for the next read."""
        for part in payload.split(","):
            if part.isdigit() and int(part) in self._watchers:
                self._to_read.add(int(part))

    async def _read(self, conn: Any) -> None:
        """Read the noted jobs that are still watched and offer each watcher its job's state."""
        ids = sorted(i for i in self._to_read if i in self._watchers)
        self._to_read.clear()
        sql, loader = self._prepared()
        for start in range(0, len(ids), self.READ_CHUNK):
            chunk = ids[start : start + self.READ_CHUNK]
            async with conn.cursor() as cursor:
                await cursor.execute(sql, {"ids": chunk})
                rows = await cursor.fetchall()
            for row in rows:
                self._publish(loader.load(row[:-4]), tuple(row[-4:]))
            for gone in set(chunk) - {row[0] for row in rows}:
                for watcher in list(self._watchers.get(gone, ())):
                    watcher.close()  # deleted (purged): nothing more will happen to it

    def _publish(self, job: Job, figures: tuple) -> None:
        position = figures if figures[0] is not None else None
        rendered: dict[bool, State] = {}
        for watcher in list(self._watchers.get(job.pk, ())):
            staff = watcher.grant.show_traceback
            if staff not in rendered:
                data = job_data(job, position, show_traceback=staff)
                state_id = event_id(data)
                rendered[staff] = State(data, state_id, job_event(data, state_id))
            watcher.offer(rendered[staff])

    def _prepared(self) -> tuple[str, RowLoader]:
        if self._statement is None:
            columns = quoted_columns(Job, self.alias, "me")
            self._statement = (
                queries.jobs_with_positions_sql(columns),
                RowLoader(Job, self.alias),
            )
        return self._statement


hub = JobHub()
