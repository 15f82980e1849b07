"""The tasks REST clients may submit, and the check of their arguments.

Only the dotted paths in ``JOBQUEUE["API_TASKS"]`` are ever imported on
behalf of a client: a submitted name is looked up in that list first, so a
name such as ``os.system`` never reaches ``import_string``.
"""

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.tasks import Task

from jobqueue.backend import JobQueueBackend, load_task
from jobqueue.conf import get_settings

# JSON type names for the annotations that arguments are checked against.
_JSON_TYPES: dict[Any, str] = {
    int: "integer",
    float: "number",
    str: "string",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


class ArgumentError(ValueError):
    """The arguments do not fit the task's signature; the message says how.

    ``field`` is the submission field to change: ``"args"`` or ``"kwargs"``.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class Parameter:
    """One parameter of an exposed task, as GET /api/tasks/ shows it."""

    name: str
    kind: str  # "positional", "positional_or_keyword", "keyword", "var_positional", "var_keyword"
    required: bool
    default: Any
    type: str | None  # a JSON type name, or None when any JSON value is accepted


@dataclass(frozen=True, slots=True, kw_only=True)
class ExposedTask:
    """A task the API may enqueue, with the signature its arguments are checked against."""

    name: str
    task: Task
    signature: inspect.Signature
    hints: dict[str, Any]

    @property
    def description(self) -> str:
        return inspect.getdoc(self.task.func) or ""

    @property
    def parameters(self) -> list[Parameter]:
        return [
            Parameter(
                name=p.name,
                kind=_KINDS[p.kind],
                required=p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD),
                default=None if p.default is p.empty else p.default,
                type=json_type_name(self.hints.get(p.name)),
            )
            for p in self.signature.parameters.values()
        ]

    def check_arguments(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise ArgumentError unless the task would accept ``args`` and ``kwargs``."""
        try:  # too many positional arguments: the args are to change
            self.signature.bind_partial(*args)
        except TypeError as e:
            raise ArgumentError(f"{self.name}{self.signature}: {e}", field="args") from e
        try:  # an unknown, missing or repeated keyword: the kwargs are
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise ArgumentError(f"{self.name}{self.signature}: {e}", field="kwargs") from e
        for name, value in bound.arguments.items():
            param = self.signature.parameters[name]
            hint = self.hints.get(name)
            if param.kind is param.VAR_POSITIONAL:
                values = {f"{name}[{i}]": ("args", v) for i, v in enumerate(value)}
            elif param.kind is param.VAR_KEYWORD:
                values = {k: ("kwargs", v) for k, v in value.items()}
            else:
                values = {name: ("kwargs" if name in kwargs else "args", value)}
            for label, (field, item) in values.items():
                if hint is not None and not json_value_fits(item, hint):
                    raise ArgumentError(
                        f"argument {label!r} of {self.name} must be {json_type_name(hint)}, "
                        f"got {json_type_name(type(item))} {item!r:.80}",
                        field=field,
                    )


_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


def json_type_name(hint: Any) -> str | None:
    """The JSON type an annotation asks for ("integer or null"), or None for any value."""
    if hint is None or hint is Any:
        return None
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        names = [json_type_name(a) for a in typing.get_args(hint)]
        return None if None in names else " or ".join(dict.fromkeys(n for n in names if n))
    return _JSON_TYPES.get(origin or hint)


def json_value_fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits an annotation; annotations it cannot judge accept anything."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(json_value_fits(value, a) for a in typing.get_args(hint))
    base = origin or hint
    if base not in _JSON_TYPES:
        return True
    if isinstance(value, bool):
        return base is bool
    if base is float:
        return isinstance(value, int | float)
    if base is tuple:
        return isinstance(value, list)
    return isinstance(value, base)


def _expose(name: str) -> ExposedTask:
    task = load_task(name)
    if not isinstance(task.get_backend(), JobQueueBackend):
        raise ImproperlyConfigured(
            f"API task {name!r} uses the {task.backend!r} tasks backend; "
            "only tasks on jobqueue's JobQueueBackend can be submitted through the API"
        )
    func: Callable[..., Any] = task.func
    signature = inspect.signature(func)
    if task.takes_context:
        params = list(signature.parameters.values())[1:]
        signature = signature.replace(parameters=params)
    try:
        hints = typing.get_type_hints(func)
    except (NameError, TypeError):
        hints = {}
    hints.pop("return", None)
    return ExposedTask(name=name, task=task, signature=signature, hints=hints)


@cache
def _registry(names: tuple[str, ...]) -> dict[str, ExposedTask]:
    return {name: _expose(name) for name in names}


def exposed_tasks() -> dict[str, ExposedTask]:
    """The exposed tasks by API name (their dotted path), in the order the settings list them."""
    return _registry(tuple(get_settings().API_TASKS))


def get_exposed(name: str) -> ExposedTask | None:
    """The exposed task called ``name``, or None: unexposed names are never imported."""
    return exposed_tasks().get(name)
