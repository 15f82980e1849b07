"""Prepared statements for the API's hot reads (token lookup, a job with its position).

A job poll is the request clients send most. Through the ORM each of its
reads cost more in compiling SQL, and in PostgreSQL planning it, than in
running it. These reads run fixed SQL instead, as server-side prepared
statements: each web thread's persistent connection plans them once and
then only binds and executes them. They still go through Django's cursor
wrapper, so they are logged, counted by tests and wrapped in Django's
database errors like any other query.
"""

from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections
from django.db.models import Model


def quoted_column(alias: str, field: Any) -> str:
    """A model field's column, quoted for the database ``alias``."""
    return connections[alias].ops.quote_name(str(field.column))


def quoted_columns(model: type[Model], alias: str, table_alias: str) -> str:
    """The model's concrete columns as ``alias."column", ...``, in ``from_db`` order."""
    return ", ".join(
        f"{table_alias}.{quoted_column(alias, f)}" for f in model._meta.concrete_fields
    )


class RowLoader:
    """Builds instances of ``model`` from a row of its concrete columns, as the ORM would.

    Applies the fields' ``from_db_value`` converters (Django's PostgreSQL
    backend reads jsonb as text and JSONField decodes it), then ``from_db``.
    """

    def __init__(self, model: type[Model], alias: str) -> None:
        self.model = model
        self.alias = alias
        fields = model._meta.concrete_fields
        self.width = len(fields)
        self.field_names = [f.attname for f in fields]
        connection = connections[alias]
        self.converters: list[tuple[int, Callable[..., Any], Any]] = [
            (i, converter, field)
            for i, field in enumerate(fields)
            for converter in field.get_db_converters(connection)
        ]

    def load(self, row: Sequence[Any]) -> Any:
        values = list(row[: self.width])
        if self.converters:
            connection = connections[self.alias]
            for i, converter, field in self.converters:
                values[i] = converter(values[i], field, connection)
        return self.model.from_db(self.alias, self.field_names, values)
