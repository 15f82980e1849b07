"""The job poll's reads: a job with its queue figures, and the same with the caller's token.

``GET /api/jobs/{id}/`` is the request clients send most, often every second
per job. Each of its database round trips costs the web process more than
the query does on the server, so a poll makes one: for a token-authenticated
request, the token, its user, the job and the job's figures come from one
prepared statement (``PollReader``); otherwise the job and its figures do
(``JobReader``), after the usual authentication.
"""

from django.db import router
from rest_framework.authtoken.models import Token
from rest_framework.request import Request

from jobqueue import queries
from jobqueue.api.authentication import TokenAuthentication, token_join, token_key
from jobqueue.api.sql import RowLoader, quoted_columns
from jobqueue.db import prepared_cursor
from jobqueue.models import Job

# A job and its figures (None unless it is queued), as queries.job_with_position returns them.
JobAndPosition = tuple[Job, tuple | None]


class JobReader:
    """One job with its figures (``queries.JOB_WITH_POSITION``), as a prepared statement."""

    def __init__(self) -> None:
        self._prepared: dict[str, tuple[str, RowLoader]] = {}

    def read(self, job_id: int, owner_id: int | None) -> JobAndPosition | None:
        """The job (among ``owner_id``'s unless None) and its figures while it is queued."""
        alias = router.db_for_read(Job)
        prepared = self._prepared.get(alias)
        if prepared is None:
            sql = queries.job_with_position_sql(quoted_columns(Job, alias, "me"))
            prepared = self._prepared.setdefault(alias, (sql, RowLoader(Job, alias)))
        sql, loader = prepared
        with prepared_cursor(alias) as cursor:
            found = queries.job_with_position(cursor, sql, job_id, owner_id)
        if found is None:
            return None
        row, position = found
        return loader.load(row), position


class PollReader:
    """The caller's token and user, and the job with its figures, in one prepared statement.

    The job is read only if the user owns it or is staff (whose permission
    to see it the caller checks); a user's token never reads another user's job.
    """

    def __init__(self) -> None:
        self._prepared: dict[str, tuple[str, RowLoader]] = {}

    def _statement(self, alias: str) -> tuple[str, RowLoader]:
        prepared = self._prepared.get(alias)
        if prepared is None:
            join = token_join(alias)
            sql = (
                f"SELECT {join.columns}, {quoted_columns(Job, alias, 'me')},"
                f" {queries.POSITION_FIGURES}"
                f" FROM {join.tables}"
                f" LEFT JOIN jobqueue_job AS me ON me.id = %(id)s"
                f" AND (me.owner_id = {join.user_id} OR {join.is_staff})"
                f" WHERE {join.key} = %(key)s"
            )
            prepared = self._prepared.setdefault(alias, (sql, RowLoader(Job, alias)))
        return prepared

    def read(self, request: Request, job_id: int) -> tuple[Job | None, tuple | None] | None:
        """Authenticate ``request`` by its token and read the job, or None if this cannot.

        On success the request's user and token are set, as DRF's token
        authentication sets them, and the result is the job and its figures
        (None as the job when there is no such job visible to the user).
        Without a well-formed token header, or with a token that would not
        authenticate, it sets nothing and returns None: the API's
        authentication classes then answer as always.
        """
        key = token_key(request)
        if key is None:
            return None
        alias = router.db_for_read(Token)
        if router.db_for_read(Job) != alias:
            return None
        sql, jobs = self._statement(alias)
        join = token_join(alias)
        with prepared_cursor(alias) as cursor:
            cursor.execute(sql, {"id": job_id, "key": key})
            row = cursor.fetchone()
        if row is None:
            return None
        user, token = join.load(row)
        if not user.is_active:
            return None
        request.user, request.auth = user, token
        request._authenticator = TokenAuthentication()  # as DRF's Request._authenticate sets it
        rest = row[join.width :]
        if rest[0] is None:
            return None, None
        figures = tuple(rest[-4:])
        return jobs.load(rest), (figures if figures[0] is not None else None)


job_reader = JobReader()
poll_reader = PollReader()
