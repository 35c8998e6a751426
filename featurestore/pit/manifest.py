"""The manifest of an export: what was read and how, so the export can be reproduced exactly.

It records the registry version (a string given by the caller), each feature table's schema,
key mapping and source (for the offline log: catalog, table and Iceberg snapshot id), the
options, the sample source, the row count, a content hash of the rows and the output.
:func:`featurestore.pit.reproduce` reads it back.

The content hash (:class:`ContentHasher`) does not depend on the row order or on the output
format: it is taken from the rows the engine produces, before they are written, as the sum of a
hash per row (the hash of the sorted rows would say the same, without a sort). Manifests written
before it existed read back with ``content_hash`` None.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurestore.errors import NotFoundError, ValidationError
from featurestore.schema import Field, TableSchema
from featurestore.types import ValueType

if TYPE_CHECKING:
    import duckdb

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
    content_hash: dict[str, str] | None = None  # {"algorithm": ..., "value": ...}; None in older manifests

    @property
    def snapshot_ids(self) -> dict[str, int | None]:
        """Iceberg snapshot id per feature table read from the offline log."""
        return {
            t["schema"]["name"]: t["source"]["snapshot_id"] for t in self.tables if t["source"]["kind"] == "iceberg"
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: str = "manifest") -> Manifest:
        """Parse a manifest; anything that is not one raises a ValidationError located at ``where``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"not an export manifest: not JSON ({exc})", location=where) from None
        if not isinstance(data, dict):
            raise ValidationError("not an export manifest: expected a JSON object", location=where)
        if data.get("version") != MANIFEST_VERSION:
            raise ValidationError(f"unsupported manifest version {data.get('version')!r}", location=where)
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names - set(data) if n not in ("version", "content_hash"))
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise ValidationError(f"not an export manifest: fields missing {missing}, unknown {unknown}",
                                  location=where)
        try:
            manifest = cls(**data)
            manifest.check()
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise ValidationError(f"not an export manifest: {type(exc).__name__} {exc}", location=where) from None
        return manifest

    def check(self) -> None:
        """Raise KeyError, TypeError or ValueError when an entry has not the shape reproduce reads."""
        for entry in self.tables:
            schema_from_dict(entry["schema"])
            if not isinstance(entry["source"]["kind"], str):
                raise TypeError("a table source kind is not a string")
            dict(entry["join_keys"])
        if not all(isinstance(f, str) for f in self.features) or not isinstance(self.output["format"], str):
            raise TypeError("features and the output format must be strings")
        if not isinstance(self.options, dict) or not isinstance(self.samples, dict):
            raise TypeError("options and samples must be objects")

    def write(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, target)
        return target

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        source = Path(path)
        try:
            text = source.read_text()
        except FileNotFoundError:
            raise NotFoundError(f"no export manifest at {source}") from None
        except (IsADirectoryError, UnicodeDecodeError) as exc:
            raise ValidationError(f"not an export manifest ({type(exc).__name__})", location=str(source)) from None
        return cls.from_json(text, where=str(source))


class ContentHasher:
    """An order-independent digest of the rows of an export, fed batch by batch.

    Each row is hashed by DuckDB (``hash`` over every column); the digest is SHA-256 over the
    column names and types, the row count and the sum of the row hashes. Equal digests mean the
    same rows (as a multiset) with the same schema, whatever their order. DuckDB's ``hash`` is
    not promised stable across DuckDB releases, so the algorithm names the release: digests of
    different algorithms are not comparable (see :func:`compare_hashes`).
    """

    def __init__(self, schema: pa.Schema) -> None:
        import duckdb

        self.algorithm = f"sha256(schema, rows, sum of row hashes) with duckdb {duckdb.__version__} hash"
        # a connection of its own: the engine's is streaming a result, which another query would end
        self._con: duckdb.DuckDBPyConnection | None = duckdb.connect()
        self._schema = schema
        self._rows = 0
        self._sum = 0
        columns = ", ".join('"' + name.replace('"', '""') + '"' for name in schema.names)
        self._sql = f"SELECT sum(hash({columns})) FROM __fs_hash_batch" if columns else None

    def update(self, table: pa.Table | pa.RecordBatch) -> None:
        self._rows += table.num_rows
        if self._sql is None or not table.num_rows:
            return
        if self._con is None:
            raise ValueError("the hasher is closed")
        self._con.register("__fs_hash_batch", table)
        try:
            rows = self._con.execute(self._sql).fetchall()
        finally:
            self._con.unregister("__fs_hash_batch")
        self._sum += int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def digest(self) -> dict[str, str]:
        text = f"{self._schema.to_string(show_schema_metadata=False)}\n{self._rows}\n{self._sum % (1 << 64)}"
        return {"algorithm": self.algorithm, "value": hashlib.sha256(text.encode()).hexdigest()}


def compare_hashes(original: dict[str, str] | None, again: dict[str, str] | None) -> bool | None:
    """True/False when both digests exist and were made the same way; None when they cannot be compared."""
    if not original or not again or original.get("algorithm") != again.get("algorithm"):
        return None
    return original.get("value") == again.get("value")
