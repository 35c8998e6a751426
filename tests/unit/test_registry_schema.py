"""The published JSON Schema is current, and the example's YAML validates against it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from registry.json_schema import SCHEMA_PATH, render
from registry.yaml_io import repo_files

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ctr"


def test_schema_file_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), "run: .venv/bin/python -m registry.json_schema"


def test_example_files_point_at_the_schema_and_validate_against_it() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    files = repo_files(EXAMPLE)
    assert len(files) >= 5
    for path in files:
        text = path.read_text()
        first = text.splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path.name
        assert (path.parent / first.split("=", 1)[1]).resolve() == SCHEMA_PATH.resolve()
        for document in yaml.safe_load_all(text):
            errors = [e.message for e in validator.iter_errors(document)]
            assert not errors, (path.name, errors)


def test_schema_rejects_unknown_fields_and_kinds() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    good = {"kind": "Entity", "name": "user", "join_keys": [{"name": "user_id"}]}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "descripton": "x"})
    assert not validator.is_valid({**good, "kind": "Entty"})
    assert validator.is_valid({"entities": [{"name": "user", "join_keys": [{"name": "user_id"}]}]})
