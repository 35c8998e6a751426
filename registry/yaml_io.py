"""Reading and writing the YAML of a feature repo, keeping line numbers.

A repo is every ``*.yaml`` / ``*.yml`` file under its root (hidden directories and the root's
``featurestore.yaml`` excepted). A file holds one or more documents (``---``); a document is either
one object with a ``kind:`` (Entity, Source, FeatureTable, SampleTable, TrainingSet) or keyed
sections (``entities:``, ``sources:``, ``feature_tables:``, ``sample_tables:``, ``training_sets:``),
each a list of objects. A source's ``avro_schema`` may be a path to an ``.avsc`` file relative to
the YAML file; it is read here, so a definition always carries its full schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from featurestore.config import CONFIG_FILE

from registry import rules
from registry.models import KINDS, SECTIONS, Definitions, kind_of
from registry.problems import LineDict, LineList, Origin, Problem

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when PyYAML has it: 5-10x faster
NOT_YAML = "not valid YAML"
SCHEMA_COMMENT = "# yaml-language-server: $schema={}\n"


class LineLoader(_Base):  # type: ignore[misc]
    """A safe loader whose mappings and sequences remember their lines; duplicate keys are errors."""


def _construct_map(loader: Any, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    data.line, data.lines = node.start_mark.line + 1, {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=False)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in data:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {data.lines[key]})", key_node.start_mark
            )
        data[key] = loader.construct_object(value_node, deep=False)
        data.lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: Any, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList()
    data.line, data.lines = node.start_mark.line + 1, []
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=False))
        data.lines.append(item.start_mark.line + 1)


LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


@dataclass(frozen=True)
class RawObject:
    """One object's YAML mapping (without ``kind``), before it becomes a model."""

    kind: str
    raw: LineDict
    origin: Origin


def repo_files(root: Path) -> list[Path]:
    """The definition files of a repo, sorted."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        if any(part.startswith(".") for part in relative.parts) or relative.as_posix() == CONFIG_FILE:
            continue
        found.append(path)
    return found


def parse_file(path: Path, root: Path) -> tuple[list[RawObject], list[Problem]]:
    """The objects of one file and the problems found reading it (syntax, shape, schema paths)."""
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    try:
        documents = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=LineLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        context = exc.context or ""
        if exc.context_mark is not None and mark is not None and exc.context_mark.line != mark.line:
            context += f" started on line {exc.context_mark.line + 1}"
        reason = ": ".join(part.strip() for part in (context, exc.problem or "") if part.strip())
        return [], [Problem(f"{name}{line}", "", "", f"{NOT_YAML}: {reason}")]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [], [Problem(name, "", "", f"{NOT_YAML}: {exc}")]
    objects: list[RawObject] = []
    problems: list[Problem] = []
    for document in documents:
        if document is None:
            continue
        for obj in _document_objects(document, name, problems):
            if obj.kind == "Source" and isinstance(obj.raw.get("avro_schema"), str):
                _read_avsc(obj, path, root, problems)
            objects.append(obj)
    return objects, problems


def _document_objects(document: Any, name: str, problems: list[Problem]) -> Iterator[RawObject]:
    line = getattr(document, "line", None)
    where = name if line is None else f"{name}:{line}"
    if not isinstance(document, LineDict):
        problems.append(Problem(where, "", "", "a document must be a mapping: one object with 'kind:', or sections"))
        return
    if "kind" in document:
        kind = document["kind"]
        if kind not in KINDS:
            hint = rules.suggest(str(kind), KINDS) or "one of: " + ", ".join(KINDS)
            problems.append(Problem(f"{name}:{document.lines['kind']}", "", "kind", f"unknown kind {kind!r}", hint))
            return
        raw = LineDict((k, v) for k, v in document.items() if k != "kind")
        raw.line, raw.lines = document.line, {k: v for k, v in document.lines.items() if k != "kind"}
        yield RawObject(str(kind), raw, Origin(name, raw))
        return
    for section, items in document.items():
        at = f"{name}:{document.lines[section]}"
        if section not in SECTIONS:
            tip = rules.suggest(str(section), SECTIONS)
            if tip is None and section in ("name", "features", "join_keys", "avro_schema"):
                tip = "a single object needs a 'kind:' line, e.g. kind: FeatureTable"
            problems.append(Problem(at, "", str(section), f"unknown section {section!r}", tip or SECTIONS_HINT))
            continue
        if not isinstance(items, LineList):
            problems.append(Problem(at, "", str(section), f"section {section!r} must be a list of objects"))
            continue
        for index, item in enumerate(items):
            if not isinstance(item, LineDict):
                where = f"{name}:{items.lines[index]}"
                problems.append(Problem(where, "", f"{section}[{index}]", "expected a mapping"))
                continue
            yield RawObject(SECTIONS[section], item, Origin(name, item))


SECTIONS_HINT = "sections are: " + ", ".join(SECTIONS)


def _read_avsc(obj: RawObject, yaml_path: Path, root: Path, problems: list[Problem]) -> None:
    text = obj.raw["avro_schema"]
    label = f"Source {obj.raw.get('name', '?')}"
    location = obj.origin.location(("avro_schema",))
    try:
        rules.avsc_path(text)
    except ValueError as exc:
        problems.append(Problem(location, label, "avro_schema", str(exc)))
        return
    target = (yaml_path.parent / text).resolve()
    if not target.is_relative_to(root.resolve()):
        problems.append(Problem(location, label, "avro_schema", f"schema file {text!r} is outside the repo"))
        return
    try:
        schema = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(Problem(location, label, "avro_schema", f"schema file {text!r} does not exist"))
        return
    except (OSError, ValueError) as exc:
        problems.append(Problem(location, label, "avro_schema", f"schema file {text!r} is not valid JSON: {exc}"))
        return
    obj.raw["avro_schema"] = schema


class _Dumper(yaml.SafeDumper):
    """Keeps unicode readable, but double-quotes (and so escapes) the characters YAML reads as line breaks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if any(c in text for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(definitions: Definitions, *, schema_url: str | None = None) -> str:
    """Every object as one YAML document with ``kind:`` first, defaults left out."""
    documents = []
    for obj in definitions.objects():
        body = obj.model_dump(mode="json", exclude_defaults=True)
        documents.append({"kind": kind_of(obj), **body})
    text = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return (SCHEMA_COMMENT.format(schema_url) if schema_url else "") + text
