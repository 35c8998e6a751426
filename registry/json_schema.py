"""The JSON Schema of a feature repo's YAML documents, generated from the models.

Editors with the YAML language server validate and complete repo files against it when a file
starts with ``# yaml-language-server: $schema=<path>/featurestore-repo.schema.json``.
Regenerate after changing a model: ``python -m registry.json_schema`` (a unit test fails while the
committed file is stale).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from registry.models import KINDS, SECTIONS, Sections

SCHEMA_PATH = Path(__file__).parent / "schema" / "featurestore-repo.schema.json"
SCHEMA_ID = "featurestore-repo.schema.json"


def repo_schema() -> dict[str, Any]:
    """One YAML document: one object with ``kind:``, or keyed sections of objects."""
    models = [(Sections, "validation"), *((model, "validation") for model in KINDS.values())]
    _, generated = models_json_schema(models, ref_template="#/$defs/{model}")  # type: ignore[arg-type]
    defs: dict[str, Any] = generated["$defs"]
    avro = defs["Source"]["properties"]["avro_schema"]
    defs["Source"]["properties"]["avro_schema"] = {
        "title": avro.get("title", "Avro Schema"),
        "description": avro.get("description", ""),
        "anyOf": [
            {"type": "object", "description": "an Avro record schema, inline"},
            {"type": "string", "pattern": r"\.avsc$", "description": "path to an .avsc file, relative to this file"},
        ],
    }
    documents = []
    for kind in KINDS:
        document = copy.deepcopy(defs[kind])
        document["title"] = f"{kind} document"
        document["properties"] = {"kind": {"const": kind}, **document["properties"]}
        document["required"] = ["kind", *document.get("required", [])]
        defs[f"{kind}Document"] = document
        documents.append({"$ref": f"#/$defs/{kind}Document"})
    sections = defs["Sections"]
    sections["description"] = "keyed sections, each a list of objects: " + ", ".join(SECTIONS)
    sections["not"] = {"required": ["kind"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "featurestore feature repo document",
        "description": "A document of a feature repo YAML file: one object with `kind:`, or keyed sections. "
        "Generated from registry/models.py by `python -m registry.json_schema`; do not edit.",
        "oneOf": [*documents, {"$ref": "#/$defs/Sections"}],
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    return json.dumps(repo_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema file; with ``--check``, exit 1 when the file is stale instead."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
    if "--check" in args:
        if current != text:
            print(f"{SCHEMA_PATH} is stale: run python -m registry.json_schema", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
