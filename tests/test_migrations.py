"""Every migration that changes the job table does so safely on a large, busy table.

Its blocking statements (ALTER TABLE, triggers, anything else that locks
jobqueue_job) run under a lock_timeout, and its indexes are built CONCURRENTLY,
unless the migration creates the table itself. Read from each migration's SQL
(sqlmigrate), so that a new migration is checked as soon as it exists.
"""

import io
import re

import pytest
import sqlparse
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader

TABLE = r'"?jobqueue_job"?(?![\w])'
INDEX = re.compile(rf"^CREATE (UNIQUE )?INDEX (?!CONCURRENTLY).*\bON {TABLE}", re.I | re.S)
BLOCKING = re.compile(rf"\b(ALTER TABLE|ON|TRUNCATE|LOCK TABLE)\s+{TABLE}", re.I)
CONCURRENT = re.compile(r"^(CREATE (UNIQUE )?|DROP )INDEX CONCURRENTLY", re.I)


def migrations() -> list[tuple[str, str]]:
    loader = MigrationLoader(None, ignore_no_migrations=True)  # from disk: no database
    return sorted(key for key in loader.disk_migrations if key[0] == "jobqueue")


def unsafe_statements(sql: str) -> list[str]:
    """The statements of ``sql`` that lock the job table without a timeout, or build an index
    on it without CONCURRENTLY."""
    if re.search(rf"CREATE TABLE {TABLE}", sql):
        return []  # a new table: nobody waits on it yet
    unsafe, timeout = [], False
    for raw in sqlparse.split(sql):
        statement = " ".join(sqlparse.format(raw, strip_comments=True).split())
        if re.match(r"SET lock_timeout", statement, re.I):
            timeout = True
        elif re.match(r"RESET lock_timeout", statement, re.I):
            timeout = False
        elif INDEX.search(statement):
            unsafe.append(f"index not built CONCURRENTLY: {statement[:120]}")
        elif BLOCKING.search(statement) and not CONCURRENT.match(statement) and not timeout:
            unsafe.append(f"no lock_timeout: {statement[:120]}")
    return unsafe


@pytest.mark.parametrize("app, name", migrations())
def test_migration_sets_a_lock_timeout_and_builds_indexes_concurrently(
    transactional_db: None, app: str, name: str
) -> None:
    """(transactional_db: sqlmigrate of a non-atomic migration refuses a surrounding transaction)"""
    out = io.StringIO()
    call_command("sqlmigrate", app, name, stdout=out)
    assert unsafe_statements(out.getvalue()) == []


def test_the_check_finds_what_it_looks_for() -> None:
    assert unsafe_statements('ALTER TABLE "jobqueue_job" ADD COLUMN x int;') != []
    assert unsafe_statements("CREATE INDEX j ON jobqueue_job (x);") != []
    assert unsafe_statements("CREATE TRIGGER t AFTER INSERT ON jobqueue_job FOR EACH ROW x();")
    safe = "SET lock_timeout = '5s'; ALTER TABLE jobqueue_job ADD x int; RESET lock_timeout;"
    assert unsafe_statements(safe) == []
    assert unsafe_statements("CREATE INDEX CONCURRENTLY j ON jobqueue_job (x);") == []
    assert unsafe_statements("ALTER TABLE jobqueue_worker ADD x int;") == []
