"""The versioned registry: every apply is a transaction that makes a new version.

Versions live in one table of any SQLAlchemy database (a SQLite file by default: the
``registry`` URL of the repo's profile). A version holds its id (1, 2, ... per project), the
content hash of its definitions, its creation time, the plan lines that led to it, and the full
serialized definitions, so ``get`` and ``rollback`` need nothing else.

``apply`` validates everything before it opens the transaction; a bad repo changes nothing. An
unchanged repo creates no version. Two applies racing for the same version id: one wins, the
other gets a TransientError and may plan and apply again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from featurestore.config import load_config
from featurestore.errors import NotFoundError, TransientError, ValidationError
from pydantic import ValidationError as PydanticValidationError

from registry.models import Definitions
from registry.plan import Plan, content_hash, diff
from registry.repo import load_repo, project_name
from registry.validate import check_definitions

_metadata = sa.MetaData()
_versions = sa.Table(
    "registry_versions",
    _metadata,
    sa.Column("project", sa.String(63), primary_key=True),
    sa.Column("version_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("rollback_of", sa.Integer, nullable=True),
    sa.Column("changes", sa.Text, nullable=False),  # JSON list of the plan's lines
    sa.Column("definitions", sa.Text, nullable=False),  # JSON of Definitions
)
_SUMMARY_COLUMNS = (
    _versions.c.version_id, _versions.c.content_hash, _versions.c.created_ms, _versions.c.rollback_of,
    _versions.c.changes,
)


@dataclass(frozen=True)
class VersionInfo:
    """One entry of the log."""

    id: int
    content_hash: str
    created_ms: int
    changes: tuple[str, ...]
    rollback_of: int | None = None


@dataclass(frozen=True, kw_only=True)
class Version(VersionInfo):
    """A version with its definitions. ``created`` is False when apply/rollback found nothing to do."""

    definitions: Definitions
    created: bool = True


def _info(m: sa.RowMapping) -> VersionInfo:
    return VersionInfo(
        int(m["version_id"]), str(m["content_hash"]), int(m["created_ms"]),
        tuple(json.loads(str(m["changes"]))), None if m["rollback_of"] is None else int(m["rollback_of"]),
    )


class Registry:
    """The registry of one project in one database."""

    def __init__(self, url: str, project: str = "default") -> None:
        self.url = url
        self.project = project
        database = sa.engine.make_url(url).database
        if url.startswith("sqlite") and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self._engine = sa.create_engine(url)
        _metadata.create_all(self._engine)

    @classmethod
    def for_repo(cls, repo: str | Path = ".", *, profile: str | None = None) -> Registry:
        """The registry named by the repo's featurestore.yaml (the ``registry`` URL of its profile)."""
        root = Path(repo).resolve()
        return cls(load_config(root, profile=profile).registry, project_name(root))

    def close(self) -> None:
        self._engine.dispose()

    # ------------------------------------------------------------------------------------ reading

    def log(self) -> list[VersionInfo]:
        """Every version of the project, oldest first."""
        query = sa.select(*_SUMMARY_COLUMNS).where(_versions.c.project == self.project).order_by(_versions.c.version_id)
        with self._engine.connect() as conn:
            return [_info(row._mapping) for row in conn.execute(query)]

    def current(self) -> VersionInfo | None:
        with self._engine.connect() as conn:
            return self._current_info(conn)

    def get(self, version: int | None = None) -> Version:
        """The current version (or version ``version``) with its definitions deserialized."""
        with self._engine.connect() as conn:
            found = self._get(conn, version)
        if found is None:
            what = "has no version yet (run apply)" if version is None else f"has no version {version}"
            hint = None if version is None else "see `featurestore registry log`"
            raise NotFoundError(f"registry of project {self.project!r} {what}", hint=hint)
        return found

    def _current_info(self, conn: sa.Connection) -> VersionInfo | None:
        query = (
            sa.select(*_SUMMARY_COLUMNS).where(_versions.c.project == self.project)
            .order_by(_versions.c.version_id.desc()).limit(1)
        )
        row = conn.execute(query).first()
        return None if row is None else _info(row._mapping)

    def _get(self, conn: sa.Connection, version: int | None) -> Version | None:
        query = sa.select(*_SUMMARY_COLUMNS, _versions.c.definitions).where(_versions.c.project == self.project)
        if version is None:
            query = query.order_by(_versions.c.version_id.desc()).limit(1)
        else:
            query = query.where(_versions.c.version_id == version)
        row = conn.execute(query).first()
        if row is None:
            return None
        info = _info(row._mapping)
        try:
            definitions = Definitions.model_validate_json(str(row._mapping["definitions"]))
        except PydanticValidationError as exc:
            raise ValidationError(
                f"registry version {info.id} of {self.project!r} no longer reads as definitions: {exc}",
                hint="it was written by an incompatible version of the feature store",
            ) from None
        return Version(**info.__dict__, definitions=definitions, created=False)

    # ------------------------------------------------------------------------------------ writing

    def _definitions(self, repo: Definitions | str | Path) -> Definitions:
        if isinstance(repo, Definitions):
            check_definitions(repo)
            definitions = repo
        else:
            definitions = load_repo(repo)
        if definitions.project != self.project:
            raise ValidationError(
                f"definitions of project {definitions.project!r} cannot go to the registry of {self.project!r}"
            )
        return definitions

    def plan(self, repo: Definitions | str | Path) -> Plan:
        """What ``apply(repo)`` would change. Validates the repo; writes nothing."""
        definitions = self._definitions(repo)
        with self._engine.connect() as conn:
            current = self._get(conn, None)
        before = current.definitions if current else None
        return diff(before, definitions, current_version=current.id if current else None)

    def apply(self, repo: Definitions | str | Path) -> Version:
        """Validate, then write a new version in one transaction. Unchanged: the current version,
        with ``created=False``."""
        return self._write(self._definitions(repo), rollback_of=None)

    def rollback(self, version_id: int) -> Version:
        """A new version whose definitions equal those of version ``version_id``."""
        target = self.get(version_id)
        check_definitions(target.definitions)
        return self._write(target.definitions, rollback_of=version_id)

    def _write(self, definitions: Definitions, *, rollback_of: int | None) -> Version:
        digest = content_hash(definitions)
        payload = definitions.model_dump_json()
        try:
            with self._engine.begin() as conn:
                head = self._current_info(conn)
                if head is not None and head.content_hash == digest:  # equal hash: equal definitions
                    return Version(**head.__dict__, definitions=definitions, created=False)
                current = self._get(conn, None)
                plan = diff(current.definitions if current else None, definitions,
                            current_version=current.id if current else None)
                version = Version(
                    id=(current.id if current else 0) + 1,
                    content_hash=digest,
                    created_ms=time.time_ns() // 1_000_000,
                    changes=tuple(str(c) for c in plan.changes),
                    rollback_of=rollback_of,
                    definitions=definitions,
                    created=True,
                )
                conn.execute(_versions.insert().values(
                    project=self.project, version_id=version.id, content_hash=digest, created_ms=version.created_ms,
                    rollback_of=rollback_of, changes=json.dumps(list(version.changes)), definitions=payload,
                ))
        except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
            raise TransientError(
                f"registry of {self.project!r} changed while applying ({type(exc.orig).__name__}): nothing was written",
                hint="run plan and apply again",
            ) from None
        return version
