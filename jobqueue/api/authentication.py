"""Token authentication with one prepared statement per request.

DRF's ``TokenAuthentication`` looks the key up with
``Token.objects.select_related("user").get(key=key)``: building that query
costs more than running it, on every API request. This subclass runs the
same join as a prepared statement and builds the token and its user from the
row. Same header (``Authorization: Token <key>``), same answers.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token
from rest_framework.request import Request

from jobqueue.api.sql import RowLoader, quoted_column, quoted_columns
from jobqueue.db import prepared_cursor


class TokenJoin:
    """SQL for a token and its user (``t`` and ``u``), and the loader of their columns.

    Other statements extend it (``jobqueue.api.reads``): their own columns
    come after the token's and the user's in each row.
    """

    def __init__(self, alias: str) -> None:
        user_model = get_user_model()
        quote = connections[alias].ops.quote_name
        token_meta, user_meta = Token._meta, user_model._meta
        self.alias = alias
        self.tokens = RowLoader(Token, alias)
        self.users = RowLoader(user_model, alias)
        self.width = self.tokens.width + self.users.width
        self.columns = (
            f"{quoted_columns(Token, alias, 't')}, {quoted_columns(user_model, alias, 'u')}"
        )
        user_pk = quoted_column(alias, user_meta.pk)
        token_user = quoted_column(alias, token_meta.get_field("user"))
        self.tables = (
            f"{quote(token_meta.db_table)} AS t"
            f" JOIN {quote(user_meta.db_table)} AS u ON u.{user_pk} = t.{token_user}"
        )
        self.key = f"t.{quoted_column(alias, token_meta.pk)}"
        self.user_id = f"t.{token_user}"
        # The user's staff flag, for statements that read others' rows only for staff.
        concrete = {f.name: f for f in user_meta.concrete_fields}
        self.is_staff = (
            f"u.{quoted_column(alias, concrete['is_staff'])}" if "is_staff" in concrete else "false"
        )
        self.lookup = f"SELECT {self.columns} FROM {self.tables} WHERE {self.key} = %s"

    def load(self, row: Any) -> tuple[Any, Token]:
        """The user and the token (with its user attached) from the start of ``row``."""
        token = self.tokens.load(row)
        user = self.users.load(row[self.tokens.width :])
        token.user = user
        return user, token


_joins: dict[str, TokenJoin] = {}


def token_join(alias: str) -> TokenJoin:
    join = _joins.get(alias)
    if join is None:
        join = _joins.setdefault(alias, TokenJoin(alias))
    return join


def token_key(request: Request) -> str | None:
    """The key of a well-formed ``Authorization: Token <key>`` header, else None."""
    auth = authentication.get_authorization_header(request).split()
    if len(auth) != 2 or auth[0].lower() != TokenAuthentication.keyword.lower().encode():
        return None
    try:
        return auth[1].decode()
    except UnicodeError:
        return None


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``, looked up with a prepared statement."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        alias = router.db_for_read(Token)
        join = token_join(alias)
        with prepared_cursor(alias) as cursor:
            cursor.execute(join.lookup, [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user, token = join.load(row)
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token
