"""Pieces of the admin job list that keep it fast on a table of millions of rows.

Django's defaults count every matching row on each page load, list every
distinct queue and task for the filters, and aggregate the dates of all rows
for the drill-down: each a full scan of a large table. These replacements
read indexes, the planner's statistics, or a bounded sample instead.
"""

import calendar
import json
from datetime import date
from functools import cached_property
from typing import Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import BigIntegerField, ExpressionWrapper, Field, QuerySet, Subquery
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.text import capfirst

from jobqueue.models import Job, JobStatus

# Counting stops here; past it, the list shows the planner's estimate.
COUNT_CAP = 10_000
# Filter choices come from this many of the newest jobs.
RECENT_SAMPLE = 10_000


class EstimatedCountPaginator(Paginator):
    """Exact counts up to COUNT_CAP rows, estimates beyond (the page links stay usable)."""

    @cached_property
    def count(self) -> int:
        queryset = cast(QuerySet, self.object_list)
        if not queryset.query.where:
            estimate = table_estimate(queryset.model._meta.db_table)
            if estimate > COUNT_CAP:
                return estimate
        capped = queryset.order_by()[: COUNT_CAP + 1].count()
        if capped <= COUNT_CAP:
            return capped
        return max(COUNT_CAP + 1, planner_estimate(queryset))


def table_estimate(table: str) -> int:
    """Rows in ``table`` by the statistics autovacuum keeps (-1 before the first ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        return int(cursor.fetchone()[0])


def planner_estimate(queryset: QuerySet) -> int:
    """Rows the planner expects ``queryset`` to return, without running it."""
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class RecentValuesFilter(admin.SimpleListFilter):
    """Choices are the values of the newest jobs (a DISTINCT over all rows would scan them)."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        field = str(self.parameter_name)
        # id > newest id - RECENT_SAMPLE: a primary-key range scan (an IN over the newest
        # ids makes the planner hash-join the whole table).
        newest = Subquery(Job.objects.order_by("-id").values("id")[:1])
        window = ExpressionWrapper(newest - RECENT_SAMPLE, output_field=BigIntegerField())
        values = set(
            Job.objects.filter(id__gt=window).order_by().values_list(field, flat=True).distinct()
        )
        if self.value():
            values.add(str(self.value()))
        return [(value, value) for value in sorted(values)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(**{str(self.parameter_name): self.value()})
        return queryset


class StatusFilter(admin.SimpleListFilter):
    """By status as ``?status=running``, with the queued jobs that are not yet due apart.

    "Scheduled" jobs (delayed, or waiting out a retry's backoff) are queued
    rows whose ``scheduled_at`` is in the future; the claim index holds them.
    """

    title = "status"
    parameter_name = "status"
    SCHEDULED = "scheduled"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices: list[tuple[str, str]] = []
        for value, label in JobStatus.choices:
            choices.append((value, label))
            if value == JobStatus.QUEUED:
                choices.append((self.SCHEDULED, "Scheduled (not yet due)"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == self.SCHEDULED:
            return queryset.filter(status=JobStatus.QUEUED, scheduled_at__gt=timezone.now())
        if self.value():
            return queryset.filter(status=self.value())
        return queryset


def calendar_drilldown(cl: Any) -> dict[str, Any]:
    """The context of admin/date_hierarchy.html, from the calendar instead of the rows.

    Years span the first and the newest job (two primary-key lookups);
    months and days are the calendar's, so some links may lead to empty pages.
    """
    field = cl.date_hierarchy
    year, month, day = (cl.params.get(f"{field}__{part}") for part in ("year", "month", "day"))

    def link(filters: dict[str, Any]) -> str:
        return cl.get_query_string(filters, [f"{field}__"])

    today = timezone.localdate()
    verbose_name = cast(Field, Job._meta.get_field(field)).verbose_name
    context: dict[str, Any] = {"show": True, "field_name": verbose_name}
    if year and month and day:
        chosen = date(int(year), int(month), int(day))
        back = {"link": link({f"{field}__year": year, f"{field}__month": month})}
        back["title"] = capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT"))
        title = capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))
        return {**context, "back": back, "choices": [{"title": title}]}
    if year and month:
        y, m = int(year), int(month)
        last = calendar.monthrange(y, m)[1]
        days = [date(y, m, d) for d in range(1, last + 1) if date(y, m, d) <= today]
        return {
            **context,
            "back": {"link": link({f"{field}__year": year}), "title": str(year)},
            "choices": [
                {
                    "link": link(
                        {f"{field}__year": y, f"{field}__month": m, f"{field}__day": d.day}
                    ),
                    "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT")),
                }
                for d in days
            ],
        }
    if year:
        y = int(year)
        months = [date(y, m, 1) for m in range(1, 13) if date(y, m, 1) <= today]
        return {
            **context,
            "back": {"link": link({}), "title": "All dates"},
            "choices": [
                {
                    "link": link({f"{field}__year": y, f"{field}__month": m.month}),
                    "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT")),
                }
                for m in months
            ],
        }
    first = Job.objects.order_by("id").values_list(field, flat=True).first()
    newest = Job.objects.order_by("-id").values_list(field, flat=True).first()
    if first is None or newest is None:
        return {**context, "show": False}
    years = range(min(first, newest).year, max(first, newest, timezone.now()).year + 1)
    return {
        **context,
        "back": None,
        "choices": [{"link": link({f"{field}__year": str(y)}), "title": str(y)} for y in years],
    }
