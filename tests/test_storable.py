"""Results and errors the worker reports are stored by real PostgreSQL jsonb, or refused in time.

Each poison value is first shown to be refused by jsonb as json.dumps() writes
it (what the executor reported before), then to give UnstorableResult with a
message that says what and where; storable values are round-tripped through
``SELECT %s::jsonb``.
"""

import json
import math

import psycopg
import pytest

from jobqueue.exceptions import UnstorableResult
from jobqueue.worker.storable import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_ERROR_TRACEBACK_CHARS,
    MAX_ERROR_TYPE_CHARS,
    describe_error,
    encode_result,
    storable_error,
)
from tests.conftest import database_url

pytestmark = pytest.mark.django_db

NAN, INF = float("nan"), float("inf")

# (value, what the message says after "cannot be stored: ")
POISON = [
    ({"mean": NAN}, "NaN at result['mean']"),
    ([1, INF], "Infinity at result[1]"),
    ({"a": {"b": [0.5, -INF]}}, "-Infinity at result['a']['b'][1]"),
    ({"text": "a\x00b"}, r"a NUL character ('\x00') at index 1 of the string at result['text']"),
    ({"k\x00": 1}, r"a NUL character ('\x00') at index 1 of the key 'k\x00' of result"),
    ([{"x": ["\x00"]}], r"a NUL character ('\x00') at index 0 of the string at result[0]['x'][0]"),
    ({"s": "x\ud800"}, r"a lone surrogate ('\ud800') at index 1 of the string at result['s']"),
    ({"s": "\udfffy"}, r"a lone surrogate ('\udfff') at index 0 of the string at result['s']"),
    ("\udc00\ud800", r"a lone surrogate ('\udc00') at index 0 of the string at result"),
    ("😀\ud83d", r"a lone surrogate ('\ud83d') at index 1 of the string at result"),
    ({"\udc80": 1}, r"a lone surrogate ('\udc80') at index 0 of the key '\udc80' of result"),
    ("a\\\udc00", r"a lone surrogate ('\udc00') at index 2 of the string at result"),
]

# Values jsonb stores, including the near misses of the checks above.
STORABLE = [
    {"rows": 42, "name": "report", "ok": True, "ratio": 0.25, "none": None},
    {"emoji": "😀👍🏽", "accents": "héllo wörld", "cjk": "中文", "rtl": "שלום"},
    "\ud83d\ude00",  # a high and a low surrogate side by side: one character in jsonb
    "a literal \\u0000 and \\ud800 are only text",
    "a backslash right before an emoji: \\😀",
    "\\\\😀\\",
    {"deep": [[[{"a": [1, [2, [3, {"b": "c"}]]]}]]]},
    [2**70, -(2**63), 0.1, -2.5],
    {"": "", "x" * 200: ["y" * 1000]},
]


@pytest.fixture
def pg():
    with psycopg.connect(database_url(), autocommit=True) as conn:
        yield conn


def stored(pg, text):
    """``text`` as PostgreSQL's jsonb stores it, read back."""
    return pg.execute("SELECT %s::jsonb", [text]).fetchone()[0]


def refused(pg, text):
    try:
        stored(pg, text)
    except psycopg.DataError:
        return True
    return False


@pytest.mark.parametrize(("value", "message"), POISON)
def test_poison_results_are_refused_by_jsonb_and_fail_the_job_saying_where(pg, value, message):
    assert refused(pg, json.dumps(value)), "jsonb takes it: nothing to guard against"
    with pytest.raises(UnstorableResult) as raised:
        encode_result(value)
    assert str(raised.value) == f"the task's return value cannot be stored: {message}"


@pytest.mark.parametrize("value", STORABLE)
def test_storable_results_round_trip_through_jsonb(pg, value):
    text = encode_result(value)
    assert text == json.dumps(value)  # what the executor has always written
    assert stored(pg, text) == json.loads(text)


def test_results_are_normalized_as_django_tasks_does():
    assert encode_result((1, b"bytes", {"t": (2, 3)})) == '[1, "bytes", {"t": [2, 3]}]'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"when": {1, 2}}, "a value of type set, which is not JSON, at result['when']"),
        ([object()], "a value of type object, which is not JSON, at result[0]"),
        ({"raw": b"\xff"}, "bytes that are not UTF-8 at result['raw']"),
        ({"a": {(1, 2): 3}}, "a key of type tuple, (1, 2), in result['a']"),
        ({NAN: 1}, "NaN as a key of result"),
    ],
)
def test_values_that_are_not_json_fail_saying_where(value, message):
    with pytest.raises(UnstorableResult) as raised:
        encode_result(value)
    assert str(raised.value) == f"the task's return value cannot be stored: {message}"


def test_a_result_that_contains_itself_fails_instead_of_crashing_the_child():
    loop: list = []
    loop.append(loop)
    with pytest.raises(UnstorableResult, match="nested too deeply, or contains itself"):
        encode_result({"loop": loop})


def test_results_over_max_result_bytes_fail(pg, settings):
    huge = {"blob": "x" * (16 * 1024 * 1024)}  # the default limit is 16 MiB of JSON
    with pytest.raises(UnstorableResult) as raised:
        encode_result(huge)
    assert str(raised.value) == (
        "the task's return value cannot be stored: its JSON is 16777228 bytes, over the limit "
        "of 16777216 (JOBQUEUE['MAX_RESULT_BYTES']); store large results elsewhere and "
        "return a reference"
    )
    settings.JOBQUEUE = {"MAX_RESULT_BYTES": 1000}
    at_limit = ["é" * 166]  # 166 six-byte escapes, quotes and brackets: 1000 bytes
    assert len(encode_result(at_limit)) == 1000
    assert stored(pg, encode_result(at_limit)) == at_limit
    with pytest.raises(UnstorableResult, match="1006 bytes, over the limit of 1000"):
        encode_result(["é" * 167])


def test_a_large_result_with_many_escapes_is_stored(pg):
    value = {"items": [{"i": i, "s": f"héllo 😀 {i}"} for i in range(20_000)]}
    assert stored(pg, encode_result(value)) == value


POISON_TEXT = "bad \x00 text \ud800 and \udcff end"


def test_error_texts_jsonb_refuses_are_cleaned_to_what_repr_shows(pg):
    error = {"type": "app.E\x00", "message": POISON_TEXT, "traceback": f"Traceback\n{POISON_TEXT}"}
    assert refused(pg, json.dumps(error))
    clean = storable_error(error)
    assert clean == {
        "type": r"app.E\x00",
        "message": r"bad \x00 text \ud800 and \udcff end",
        "traceback": "Traceback\n" + r"bad \x00 text \ud800 and \udcff end",
    }
    assert stored(pg, json.dumps(clean)) == clean


def test_error_texts_that_are_fine_are_kept_as_they_are(pg):
    error = {"type": "builtins.ValueError", "message": "héllo 😀 \\x00", "traceback": "T\n"}
    assert storable_error(error) == error
    assert stored(pg, json.dumps(error)) == error


def test_long_error_texts_are_capped_keeping_the_messages_start_and_the_tracebacks_end(pg):
    error = {
        "type": "t" * 5000,
        "message": "start " + "m" * 20_000,
        "traceback": "Traceback (most recent call last):\n" + "f" * 100_000 + "\nValueError: end",
    }
    clean = storable_error(error)
    assert len(clean["type"]) <= MAX_ERROR_TYPE_CHARS
    assert len(clean["message"]) <= MAX_ERROR_MESSAGE_CHARS
    assert len(clean["traceback"]) <= MAX_ERROR_TRACEBACK_CHARS
    head, more = clean["message"].rsplit(" [", 1)
    assert head.startswith("start mmm")
    assert more == f"{len(error['message']) - len(head)} more characters]"
    assert clean["traceback"].startswith("[")
    assert clean["traceback"].endswith("f\nValueError: end")
    cut = int(clean["traceback"].split(" ", 1)[0][1:])
    kept = clean["traceback"].split("\n", 1)[1]
    assert cut + len(kept) == len(error["traceback"])
    assert stored(pg, json.dumps(clean)) == clean


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


def test_describe_error_stores_any_exception(pg):
    try:
        raise ValueError(POISON_TEXT)
    except ValueError as e:
        error = describe_error(e)
    assert error["type"] == "builtins.ValueError"
    assert error["message"] == r"bad \x00 text \ud800 and \udcff end"
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert error["traceback"].endswith("ValueError: bad \\x00 text \\ud800 and \\udcff end\n")
    assert stored(pg, json.dumps(error)) == error
    try:
        raise Unprintable()
    except Unprintable as e:
        error = describe_error(e)
    assert error["type"] == "tests.test_storable.Unprintable"
    assert error["message"] == "<exception str() failed>"
    assert stored(pg, json.dumps(error)) == error


def test_non_finite_floats_are_never_written_as_text():
    for value in (NAN, INF, -INF):
        with pytest.raises(UnstorableResult):
            encode_result(value)
    assert math.isfinite(json.loads(encode_result(1e308)))
