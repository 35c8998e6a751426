"""Problems found in a feature repo, each with file, line, field, reason and a hint.

A :class:`LineMap` remembers the line of every key and list item of a parsed YAML document (see
:mod:`registry.yaml_io`), so an error at ``features[3].column`` points at the line of that column.
All problems of a repo are collected and raised at once as one :class:`RepoValidationError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from featurestore.errors import ValidationError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from registry import rules

Path = tuple[str | int, ...]
PYTHON = "<python>"


class LineDict(dict[Any, Any]):
    """A YAML mapping that knows its own line and the line of each key (1-based)."""

    line: int = 0
    lines: dict[Any, int]


class LineList(list[Any]):
    """A YAML sequence that knows its own line and the line of each item (1-based)."""

    line: int = 0
    lines: list[int]


@dataclass(frozen=True)
class Origin:
    """Where an object was defined: a file and its raw YAML mapping, or the Python API."""

    file: str = PYTHON
    raw: Any = None

    def line(self, path: Path = ()) -> int | None:
        node = self.raw
        line = getattr(node, "line", None)
        for step in path:
            if isinstance(node, LineDict) and step in node:
                line, node = node.lines.get(step, line), node[step]
            elif isinstance(node, LineList) and isinstance(step, int) and 0 <= step < len(node):
                line, node = node.lines[step], node[step]
            else:
                break
        return line

    def location(self, path: Path = ()) -> str:
        line = self.line(path)
        return self.file if line is None else f"{self.file}:{line}"


@dataclass(frozen=True)
class Problem:
    location: str  # file:line
    subject: str  # the object, e.g. "FeatureTable user_features"; "" for a whole file
    field: str  # inside the object, e.g. "features[3].column"; "" for the object itself
    reason: str
    hint: str | None = None

    @property
    def what(self) -> str:
        return ": ".join(part for part in (self.subject, self.field) if part)

    def __str__(self) -> str:
        text = f"{self.location}: {self.what}: {self.reason}" if self.what else f"{self.location}: {self.reason}"
        return text if self.hint is None else f"{text} (hint: {self.hint})"


class RepoValidationError(ValidationError):
    """A feature repo breaks one or more rules; ``problems`` lists each with file and line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0]
        if len(self.problems) == 1:
            super().__init__(
                f"{first.what}: {first.reason}" if first.what else first.reason,
                location=first.location,
                hint=first.hint,
            )
        else:
            listing = "\n".join(f"  {p}" for p in self.problems)
            super().__init__(f"{len(self.problems)} problems in the feature repo:\n{listing}", location=None)


def format_path(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def field_names(model: type[BaseModel] | None) -> list[str]:
    return [] if model is None else list(model.model_fields)


def _model_at(model: type[BaseModel], path: Path) -> type[BaseModel] | None:
    """The model class that owns the last step of ``path`` (for 'did you mean' on unknown fields)."""
    current: Any = model
    for step in path[:-1]:
        if isinstance(step, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or step not in current.model_fields:
            return None
        current = _inner_model(current.model_fields[step].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def from_pydantic(exc: PydanticValidationError, model: type[BaseModel], origin: Origin, subject: str) -> list[Problem]:
    """One Problem per pydantic error, pointing at the line of the offending field."""
    problems = []
    errors = exc.errors(include_url=False)
    for error in errors:
        # pydantic reports a list whose only item failed as also too short: that one is noise.
        if error["type"] == "too_short" and any(
            len(other["loc"]) > len(error["loc"]) and other["loc"][: len(error["loc"])] == error["loc"]
            for other in errors
        ):
            continue
        # Drop pydantic's union/type tags from the path (e.g. 'str', 'tuple[...]') to keep the field readable.
        path: Path = tuple(
            step for step in error["loc"]
            if isinstance(step, int) or step in _all_fields(model) or step in _raw_keys(origin.raw)
        )
        kind, message, hint = error["type"], str(error["msg"]), None
        name = path[-1] if path else ""
        if kind == "extra_forbidden":
            owner = _model_at(model, path)
            message = f"unknown field {name!r}"
            hint = rules.suggest(str(name), field_names(owner))
            if hint is None and owner is not None:
                hint = "known fields: " + ", ".join(field_names(owner))
        elif kind == "missing":
            message = f"missing required field {name!r}"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        elif kind in ("model_type", "dict_type") and "input" in error:
            message = f"expected a mapping, got {type(error['input']).__name__}"
        problems.append(Problem(origin.location(path), subject, format_path(path), message, hint))
    return problems


def _all_fields(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    stack: list[Any] = [model]
    while stack:
        current = stack.pop()
        for name, info in current.model_fields.items():
            if name not in names:
                names.add(name)
                inner = _inner_model(info.annotation)
                if inner is not None and inner is not current:
                    stack.append(inner)
    return names


def _raw_keys(raw: Any) -> set[Any]:
    keys: set[Any] = set()
    stack = [raw]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            keys.update(k for k in node if isinstance(k, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return keys


def raise_if(problems: Iterable[Problem]) -> None:
    found = list(problems)
    if found:
        raise RepoValidationError(found)
