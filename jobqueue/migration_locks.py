"""A bounded wait for the locks of migrations that change the job table.

An ALTER TABLE (or a trigger, a constraint, a plain index) waits for its lock
behind every transaction on the table, and every worker's claim and ack then
queue behind it: the queue stops for as long as the migration waits. So such
statements run under a ``lock_timeout``: one that cannot get its lock within
LOCK_TIMEOUT fails the migration, which is then run again (README: upgrading
with migrations). Indexes are built CONCURRENTLY instead, outside it: they
block no writes, and a build stopped by a lock timeout would leave an invalid index.

In a migration, ``*with_lock_timeout([...operations...])``; tests/test_migrations.py
checks every migration's SQL.
"""

from collections.abc import Sequence

from django.db import migrations
from django.db.migrations.operations.base import Operation

LOCK_TIMEOUT = "5s"

_SET = f"SET lock_timeout = '{LOCK_TIMEOUT}'"
_RESET = "RESET lock_timeout"


def with_lock_timeout(operations: Sequence[Operation]) -> list[Operation]:
    """``operations`` between a SET and a RESET of lock_timeout, in either direction."""
    return [
        migrations.RunSQL(_SET, _RESET),
        *operations,
        migrations.RunSQL(_RESET, _SET),
    ]
