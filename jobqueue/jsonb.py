"""What PostgreSQL's jsonb refuses: found fast in JSON text, then named in the Python value.

jsonb stores neither NaN nor the infinities, nor the character NUL, nor a
UTF-16 surrogate that is not half of a pair (a "lone surrogate": Python
strings may hold one, e.g. from ``os.fsdecode`` of bytes that are not UTF-8,
and json.dumps() writes it as an escape such as ``\\ud800``). A statement that
carries one fails, so jobqueue checks values before they reach a statement:
task arguments at enqueue (``jobqueue.backend``), results and errors in the
worker (``jobqueue.worker.storable``).

The text check runs on every value and costs a substring search unless the
text has a NUL or surrogate escape; the walk that says what and where runs
only when that check found something.

Texts that are only shown (error messages, progress messages) are not
refused but cleaned by ``storable_text()``; a text column refuses the same
characters, and surrogates even in pairs (psycopg cannot encode them).
"""

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

# A \u0000 escape that is not itself escaped ("\\u0000" is a backslash, then "u0000").
NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# A high surrogate escape without a low one after it, or a low one without a
# real high one before it. Every lone surrogate escape matches; so may, rarely,
# a storable text in which a literal backslash comes right before a surrogate
# pair, which is why a match is confirmed by first_problem().
SURROGATE_ESCAPE = re.compile(
    r"\\ud(?:[89ab][0-9a-f]{2}(?!\\ud[c-f])"
    r"|[c-f][0-9a-f]{2}(?<!(?<!\\)\\ud[89ab][0-9a-f]{2}\\ud[c-f][0-9a-f]{2}))"
)

# In a Python string: NUL, a high surrogate without a low one after it, or a low
# surrogate without a high one before it. json.dumps() writes an adjacent high
# and low surrogate as an escaped pair, which jsonb reads as one character.
_UNSTORABLE_CHAR = re.compile(
    "\x00|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)

_SCALARS = str | bytes | bool | int | float | None


def storable_text(text: str) -> str:
    """``text`` with what PostgreSQL cannot store spelled out as repr() shows it.

    A NUL becomes the four characters ``\\x00`` and a surrogate (an
    undecodable file name in a traceback, say) its ``\\udXXX`` escape, so
    that the text can be stored in a text or jsonb column and still says what
    it held. Text without them costs two scans that stop early (isascii, "in").
    """
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # surrogates
            text = text.encode(errors="backslashreplace").decode()
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text


def may_be_refused(text: str) -> bool:
    """False if jsonb surely accepts ``text``, JSON as json.dumps() writes it (ASCII only).

    True if it has a NUL or lone surrogate escape (or, rarely, looks as if it
    had one): then ``first_problem()`` of the value says whether and where.
    """
    return ("\\u0000" in text and NUL_ESCAPE.search(text) is not None) or (
        "\\ud" in text and SURROGATE_ESCAPE.search(text) is not None
    )


def first_problem(value: Any, root: str) -> str | None:
    """What in ``value`` is not JSON or would be refused by jsonb, and where; None if nothing.

    For example ``NaN at result['mean']`` or ``a NUL character ('\\x00') at
    index 3 of the string at kwargs['name']``, ``root`` naming the whole
    value. Walks the value as given (before normalize_json), with a stack
    rather than recursion, and each container once, so that a value
    containing itself ends the walk. Slow: call it once encoding failed.
    """
    stack: list[tuple[Any, Any]] = [((root,), value)]
    seen: set[int] = set()
    while stack:
        path, item = stack.pop()
        if isinstance(item, _SCALARS):
            where = _path(path)
            problem = _scalar_problem(item, at=f"at {where}", within=f"the string at {where}")
            if problem:
                return problem
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Mapping):
            children = []
            for key, child in item.items():
                where = _path(path)
                if not isinstance(key, _SCALARS):
                    return f"a key of type {type(key).__name__}, {_shown(key)}, in {where}"
                problem = _scalar_problem(
                    key, at=f"as a key of {where}", within=f"the key {_shown(key)} of {where}"
                )
                if problem:
                    return problem
                children.append(((path, (key,)), child))
            stack.extend(reversed(children))
        elif isinstance(item, Sequence):
            stack.extend(reversed([((path, i), child) for i, child in enumerate(item)]))
        else:
            return f"a value of type {type(item).__name__}, which is not JSON, at {_path(path)}"
    return None


def deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels deep in ``value``.

    ``[]`` is one level deep, ``{"a": [1]}`` two, a scalar none. Walks with a
    stack rather than recursion, so that no depth can exhaust Python's, and
    stops at the first container past the limit (a value containing itself too).
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth == limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _scalar_problem(item: Any, *, at: str, within: str) -> str | None:
    """What jsonb would refuse in one scalar: ``NaN {at}``, ``a NUL character ... of {within}``."""
    if isinstance(item, float) and not math.isfinite(item):
        name = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
        return f"{name} {at}"
    if isinstance(item, bytes):
        try:
            item = item.decode()
        except UnicodeDecodeError:
            return f"bytes that are not UTF-8 {at}"
    if isinstance(item, str) and (bad := _UNSTORABLE_CHAR.search(item)):
        what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate"
        return f"{what} ({_shown(bad.group())}) at index {bad.start()} of {within}"
    return None


def _path(path: Any) -> str:
    """``result['a'][0]`` from the linked steps ``((("result",), ("a",)), 0)``.

    A list index is an int, a mapping's key a 1-tuple.
    """
    steps = []
    while len(path) == 2:
        path, step = path
        steps.append(f"[{_shown(step[0])}]" if isinstance(step, tuple) else f"[{step}]")
    return path[0] + "".join(reversed(steps))


def _shown(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else f"{text[:57]}..."
