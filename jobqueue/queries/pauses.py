"""The lock a pause and the claims serialise on: taken shared by every claim, before its
statements read the pause table, and exclusive by a pause, before it inserts its row.

Who holds what (READ COMMITTED; each statement takes its snapshot when it starts):

- A claim sends PAUSE_GUARD first in its transaction (the pipeline that carries it, up to
  its commit): a shared transaction-level advisory lock. Its later statements, which read
  jobqueue_queuepause, take their snapshots after it is granted.
- A pause sends PAUSE_LOCK, the same lock exclusive, then inserts its row and commits.
  The exclusive lock waits for every claim that holds it shared (one that may have read
  the table without the pause) to commit. A claim that asks for it meanwhile queues behind
  the pause, gets it once the pause has committed, and so reads the table with the pause
  in it. Once a pause has returned, no claim takes a job of its queue.
- Nothing else takes this lock: not pg_dump, not an idle transaction that read the pause
  table, not a migration. Claims queue behind a pause only while the pause waits for the
  claims already under way, which are short (the worker's statement and lock timeouts
  bound them). The table lock it replaces (LOCK TABLE ... ACCESS EXCLUSIVE) queued behind
  any reader of the table, a dump for hours, and every claim of every queue behind it.

The key is the pause table's own oid (the two-key form), so it names what it guards and
no application's advisory lock on one bigint can collide with it.
"""

_KEY = "'jobqueue_queuepause'::regclass::oid::int, 0"

PAUSE_GUARD = f"SELECT pg_advisory_xact_lock_shared({_KEY})"
PAUSE_LOCK = f"SELECT pg_advisory_xact_lock({_KEY})"
