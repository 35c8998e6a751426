"""The manifest of an export: what was read and how, so the export can be reproduced exactly.

It records the registry version (a string given by the caller), each feature table's schema,
key mapping and source (for the offline log: catalog, table and Iceberg snapshot id), the
options, the sample source, the row count and the output. :func:`featurestore.pit.reproduce`
reads it back.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from featurestore.errors import ValidationError
from featurestore.schema import Field, TableSchema
from featurestore.types import ValueType

MANIFEST_VERSION = 1


def schema_to_dict(schema: TableSchema) -> dict[str, Any]:
    return {
        "name": schema.name,
        "keys": [[k.name, k.dtype.value] for k in schema.keys],
        "features": [[f.name, f.dtype.value] for f in schema.features],
        "ttl_ms": schema.ttl_ms,
        "max_versions": schema.max_versions,
    }


def schema_from_dict(data: dict[str, Any]) -> TableSchema:
    return TableSchema(
        name=data["name"],
        keys=tuple(Field(n, ValueType.parse(t)) for n, t in data["keys"]),
        features=tuple(Field(n, ValueType.parse(t)) for n, t in data["features"]),
        ttl_ms=data.get("ttl_ms"),
        max_versions=data.get("max_versions"),
    )


@dataclass(frozen=True)
class Manifest:
    registry_version: str
    created_at: str  # ISO-8601 UTC
    features: list[str]
    event_time: str
    samples: dict[str, Any]  # {"paths": [...] or None (in memory), "rows": n}
    tables: list[dict[str, Any]]  # {"schema": ..., "join_keys": ..., "source": {...}}
    options: dict[str, Any]
    output: dict[str, Any]  # {"target": path or table identifier, "format": ...}
    row_count: int
    version: int = MANIFEST_VERSION

    @property
    def snapshot_ids(self) -> dict[str, int | None]:
        """Iceberg snapshot id per feature table read from the offline log."""
        return {
            t["schema"]["name"]: t["source"]["snapshot_id"] for t in self.tables if t["source"]["kind"] == "iceberg"
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.get("version") != MANIFEST_VERSION:
            raise ValidationError(f"unsupported manifest version {data.get('version')!r}", location="manifest")
        return cls(**data)

    def write(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, target)
        return target

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        return cls.from_json(Path(path).read_text())
