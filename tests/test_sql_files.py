"""docs/sql/ is the SQL that jobqueue/queries/ sends, as scripts/write_sql.py writes it.

A reader looks up the claim that actually runs in docs/sql/claims.sql; this fails while any
file there differs from the statements the modules assemble (run ``make sql``), and checks
that the files hold the statements a reader comes for.
"""

import importlib.util

from jobqueue import queries
from tests.conftest import ROOT

SPEC = importlib.util.spec_from_file_location("write_sql", ROOT / "scripts" / "write_sql.py")
assert SPEC is not None and SPEC.loader is not None
write_sql = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(write_sql)
DOCS = ROOT / "docs" / "sql"


def test_docs_sql_is_what_the_queries_send():
    written = {path.name: path.read_text() for path in DOCS.glob("*.sql")}

    assert written == write_sql.rendered(), "docs/sql/ differs from jobqueue/queries/: make sql"


def test_the_claim_a_worker_sends_is_written_out_whole():
    claims = (DOCS / "claims.sql").read_text()

    for name in ("CLAIM_QUEUES", "CLAIM_PLAIN_QUEUES"):
        statement = getattr(queries, name).strip()
        assert f"-- {name}\n{statement};\n" in claims
        assert "{" not in statement.replace("'{}'", "")  # every fragment filled in
    assert "FOR UPDATE SKIP LOCKED" in claims
    assert "-- LOCK_LIMITS_QUEUES\n" in (DOCS / "limits.sql").read_text()


def test_a_fragment_is_not_a_statement():
    assert not write_sql.is_statement(queries.LOCK_LIMITS)  # {limit_filter} not filled in
    assert not write_sql.is_statement(queries.UNIQUE_CONFLICT)  # a clause, not a statement
    assert write_sql.is_statement(queries.SYNC_LIMITS)  # its '{}' is an empty array literal
