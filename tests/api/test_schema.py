"""The OpenAPI schema tells the truth: it is the committed one, and it describes the lean JSON.

``JobSerializer`` declares the job's fields for the schema, but the API answers with
``job_data()``, built by hand for speed; these tests hold the two together, for a job in every
state, as its owner and as staff, field by field and type by type.
"""

from datetime import datetime
from typing import Any

import jsonschema
import pytest
import yaml
from django.db import connection
from drf_spectacular.generators import SchemaGenerator

from jobqueue import queries
from jobqueue.api.serializers.jobs import job_data
from jobqueue.models import Job, JobStatus
from tests.api.conftest import jobs_in_every_state
from tests.conftest import ROOT

COMMITTED = ROOT / "docs" / "openapi.yaml"
# OpenAPI 3.0 words that are no JSON Schema keywords (nullable is rewritten, not dropped).
NOT_JSON_SCHEMA = {"nullable", "readOnly", "writeOnly", "example"}


def to_json_schema(node: Any, components: dict[str, Any]) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema: references inlined, ``nullable`` as null."""
    if isinstance(node, list):
        return [to_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return to_json_schema(components[node["$ref"].rsplit("/", 1)[1]], components)
    schema = {k: to_json_schema(v, components) for k, v in node.items() if k not in NOT_JSON_SCHEMA}
    if node.get("nullable"):
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def is_date_time(value: object) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


def job_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The Job component as served (raw), and as JSON Schema."""
    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    raw = components["Job"]
    return raw, to_json_schema(raw, components)


def test_the_served_schema_is_the_committed_one(api):
    """A schema change shows in review: regenerate with `make schema` and commit it."""
    reply = api.call("GET", "/api/schema/", headers={"Accept": "application/vnd.oai.openapi"})
    assert reply.status == 200
    served = yaml.safe_load(reply.body)
    committed = yaml.safe_load(COMMITTED.read_text())
    assert served == committed, (
        "the served OpenAPI schema differs from docs/openapi.yaml: run `make schema`, "
        "review the difference and commit it"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("staff", [False, True], ids=["owner", "staff"])
def test_job_data_has_exactly_the_schemas_fields_and_types_in_every_state(make_user, staff):
    owner, _ = make_user()
    ids = jobs_in_every_state(owner)
    jobs = Job.objects.filter(pk__in=ids).order_by("pk")
    with connection.cursor() as cursor:
        positions = queries.queue_positions(
            cursor, [j.pk for j in jobs if j.status == JobStatus.QUEUED]
        )
    raw, schema = job_schema()
    validator = jsonschema.Draft7Validator(schema, format_checker=FORMATS)
    seen = set()
    for job in jobs:
        data = job_data(job, positions.get(job.pk), show_traceback=staff)
        assert list(data) == list(raw["properties"]), job.status
        assert set(raw["required"]) <= set(data)
        problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
        assert not problems, (job.status, problems)
        assert all(("traceback" in e) is staff for e in data["errors"])
        if job.progress_percent is not None:  # stored as 100 / 6
            assert data["progress"]["percent"] == 16.67
        seen.add(data["status"])
    assert seen == set(JobStatus.values)


def test_the_schema_refuses_what_job_data_must_not_return():
    """The comparison above can fail: a field of the wrong type or a null where none may be."""
    _, schema = job_schema()
    validator = jsonschema.Draft7Validator(schema, format_checker=FORMATS)
    job = Job(pk=1, task="demo.echo", queue="default", status=JobStatus.QUEUED)
    good = job_data(job, None, show_traceback=False)
    for field, wrong in [
        ("id", "1"),
        ("status", "done"),
        ("priority", 101),
        ("created_at", "yesterday"),
        ("progress", {"percent": 101, "message": "", "updated_at": None}),
        ("position_in_queue", -1),
        ("errors", [{"attempt": 1, "type": "t", "message": "m", "at": None, "worker": None}]),
    ]:
        assert not validator.is_valid({**good, field: wrong}), field
    assert validator.is_valid(good)
