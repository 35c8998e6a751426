"""``memory://``: the online cache as a dict in this process (the local profile).

Same semantics as Redis (the online cache contract suite runs on both): a cell lands only if its
(version_ms, seq) is greater than the stored one. Each ``open_online_cache("memory://")`` is a
new, empty cache; nothing is shared between processes or kept after exit.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from featurestore.schema import TableSchema
from featurestore.storage.online import OnlineBase, Stored, Updates


class MemoryCache(OnlineBase):
    def __init__(self) -> None:
        super().__init__()
        self.uri = "memory://"
        self._tables: dict[str, dict[bytes, dict[str, Stored]]] = {}
        self._stored_schemas: dict[str, TableSchema] = {}
        self._lock = threading.Lock()

    def _load_schema(self, table: str) -> TableSchema | None:
        return self._stored_schemas.get(table)

    def _save_schema(self, schema: TableSchema) -> None:
        self._stored_schemas[schema.name] = schema
        self._tables.setdefault(schema.name, {})

    def _apply(self, table: str, updates: Updates) -> int:
        landed = 0
        with self._lock:
            rows = self._tables.setdefault(table, {})
            for (key, feature), cell in updates.items():
                row = rows.setdefault(key, {})
                old = row.get(feature)
                if old is None or (cell[0], cell[1]) > (old[0], old[1]):
                    row[feature] = cell
                    landed += 1
        return landed

    def _read_raw(self, table: str, keys: list[bytes], features: Sequence[str]) -> list[dict[str, Stored]]:
        rows = self._tables.get(table, {})
        with self._lock:
            return [{f: row[f] for f in features if f in row} for row in (rows.get(k, {}) for k in keys)]

    def _delete(self, table: str, key: bytes) -> None:
        with self._lock:
            self._tables.get(table, {}).pop(key, None)

    def _drop(self, table: str) -> None:
        with self._lock:
            self._tables.pop(table, None)
            self._stored_schemas.pop(table, None)

    def close(self) -> None:
        pass
