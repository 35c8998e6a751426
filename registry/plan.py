"""What applying a repo would change, object by object, and what each change means for stored data.

A :class:`Plan` lists added, changed and removed objects. Each change carries one line per
difference saying its consequence: ``needs backfill`` (stored values no longer match the
definition and history must be replayed), ``unreachable`` (stored versions can no longer be read),
``reads change, no rewrite``, or ``metadata only``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

from registry.models import SECTIONS, Definition, Definitions, Entity, FeatureTable, Source, kind_of

Action = Literal["added", "changed", "removed"]
BACKFILL = "needs backfill"
UNREACHABLE = "stored versions become unreachable"
NO_REWRITE = "reads change, no rewrite"
METADATA = "metadata only"
_METADATA_FIELDS = ("description", "owner", "tags")


def content_hash(definitions: Definitions) -> str:
    """sha256 of the canonical JSON of every definition (order of files and keys does not matter)."""
    text = json.dumps(definitions.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: Action
    details: tuple[str, ...] = ()
    needs_backfill: bool = False
    breaking: bool = False  # stored versions become unreachable

    def __str__(self) -> str:
        head = f"{self.action} {self.kind} {self.name}"
        return head if not self.details else head + ": " + "; ".join(self.details)


@dataclass(frozen=True)
class Plan:
    project: str
    current_version: int | None
    current_hash: str | None
    content_hash: str
    changes: tuple[Change, ...] = field(default=())

    @property
    def unchanged(self) -> bool:
        return self.current_hash == self.content_hash

    def by_action(self, action: Action) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action == action)

    @property
    def needs_backfill(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.changes if c.needs_backfill)

    def summary(self) -> str:
        if self.unchanged:
            return f"no changes: project {self.project!r} is at version {self.current_version}"
        counts = ", ".join(f"{len(self.by_action(a))} {a}" for a in ("added", "changed", "removed"))
        return f"{counts} (project {self.project!r}, current version {self.current_version or 'none'})"


def diff(old: Definitions | None, new: Definitions, *, current_version: int | None = None) -> Plan:
    old_objects = {} if old is None else {(kind_of(o), o.name): o for o in old.objects()}
    new_objects = {(kind_of(o), o.name): o for o in new.objects()}
    order = {kind: i for i, kind in enumerate(SECTIONS.values())}
    changes: list[Change] = []
    for key in sorted(set(old_objects) | set(new_objects), key=lambda k: (order[k[0]], k[1])):
        before, after = old_objects.get(key), new_objects.get(key)
        if before is None and after is not None:
            changes.append(_added(after))
        elif after is None and before is not None:
            changes.append(_removed(before))
        elif before is not None and after is not None and before != after:
            changes.append(_changed(before, after, new))
    return Plan(
        project=new.project,
        current_version=current_version,
        current_hash=None if old is None else content_hash(old),
        content_hash=content_hash(new),
        changes=tuple(changes),
    )


def _max_window(table: FeatureTable) -> str | None:
    windows = [(f.window_ms, f.window) for f in table.features if f.window_ms is not None]
    return max(windows)[1] if windows else None


def _added(obj: Definition) -> Change:
    kind = kind_of(obj)
    if isinstance(obj, FeatureTable):
        longest = _max_window(obj)
        reach = f"{longest} of history" if longest else "history"
        detail = f"{len(obj.features)} features; values before now {BACKFILL} of {reach}"
        return Change(kind, obj.name, "added", (detail,), needs_backfill=True)
    if isinstance(obj, Source):
        topic = f"topic {obj.stream.topic}" if obj.stream else "no stream"
        return Change(kind, obj.name, "added", (f"{len(obj.columns)} columns, {topic}",))
    return Change(kind, obj.name, "added")


def _removed(obj: Definition) -> Change:
    kind = kind_of(obj)
    if isinstance(obj, FeatureTable):
        return Change(kind, obj.name, "removed", (f"table removed: {UNREACHABLE}",), breaking=True)
    if isinstance(obj, Source) and obj.stream is not None:
        return Change(kind, obj.name, "removed", (f"ingestion stops reading topic {obj.stream.topic}",))
    return Change(kind, obj.name, "removed")


def _changed(before: Definition, after: Definition, new: Definitions) -> Change:
    if isinstance(before, FeatureTable) and isinstance(after, FeatureTable):
        details, backfill, breaking = _feature_table(before, after)
    elif isinstance(before, Source) and isinstance(after, Source):
        details, backfill, breaking = _source(before, after, new)
    elif isinstance(before, Entity) and isinstance(after, Entity):
        details, backfill, breaking = _entity(before, after, new)
    else:
        details, backfill, breaking = _generic(before, after)
    return Change(kind_of(after), after.name, "changed", tuple(details), needs_backfill=backfill, breaking=breaking)


Result = tuple[list[str], bool, bool]


def _fields(before: Definition, after: Definition) -> list[str]:
    return [name for name in type(after).model_fields if getattr(before, name) != getattr(after, name)]


def _generic(before: Definition, after: Definition) -> Result:
    details = []
    for name in _fields(before, after):
        if name in _METADATA_FIELDS:
            details.append(f"{name} changed: {METADATA}")
        else:
            details.append(f"{name} changed: {_describe(kind_of(after), name)}")
    return details, kind_of(after) == "SampleTable" and any(
        n not in _METADATA_FIELDS for n in _fields(before, after)
    ), False


def _describe(kind: str, name: str) -> str:
    if kind == "SampleTable":
        return "samples from now on follow it; regenerate past samples (backfill) to keep them consistent"
    if kind == "TrainingSet":
        return "the next export uses it; no stored data changes"
    if kind == "Entity":
        return f"tables of this entity get a new key space: {UNREACHABLE}; {BACKFILL}"
    return "changed"


def _entity(before: Entity, after: Entity, new: Definitions) -> Result:
    details, _, _ = _generic(before, after)
    breaking = "join_keys" in _fields(before, after)
    if breaking:
        users = [t.name for t in new.feature_tables if t.entity == after.name]
        details.append(f"affected tables: {', '.join(users) or 'none'}")
    return details, breaking, breaking


def _source(before: Source, after: Source, new: Definitions) -> Result:
    users = [t.name for t in new.feature_tables if t.source == after.name]
    details: list[str] = []
    backfill = False
    for name in _fields(before, after):
        if name == "avro_schema":
            details.extend(_schema_details(before, after))
        elif name == "event_time":
            backfill = True
            details.append(f"event-time column {before.event_time} -> {after.event_time}: "
                           f"tables {', '.join(users) or 'none'} {BACKFILL}")
        elif name == "stream":
            details.append("stream binding changed: the ingestion job restarts on the new binding")
        elif name == "batch":
            details.append("batch layout changed: backfills read the new layout; stored data unchanged")
        elif name == "allowed_lateness":
            details.append(f"allowed lateness {before.allowed_lateness} -> {after.allowed_lateness}: "
                           "late-event handling changes from now on, no rewrite")
        else:
            details.append(f"{name} changed: {METADATA}")
    return details, backfill, False


def _schema_details(before: Source, after: Source) -> list[str]:
    old_cols, new_cols = before.columns, after.columns
    details = [f"column {c} added: compatible" for c in new_cols if c not in old_cols]
    details += [f"column {c} removed: events written before still carry it" for c in old_cols if c not in new_cols]
    for name in old_cols.keys() & new_cols.keys():
        if old_cols[name].avro != new_cols[name].avro:
            details.append(f"column {name} type changed: stored events of the old type need conversion")
    return details or ["schema documentation changed: no data change"]


def _feature_table(before: FeatureTable, after: FeatureTable) -> Result:
    details: list[str] = []
    backfill = breaking = False
    for name in _fields(before, after):
        if name == "features":
            feature_details, feature_backfill, feature_breaking = _feature_details(before, after)
            details.extend(feature_details)
            backfill, breaking = backfill or feature_backfill, breaking or feature_breaking
        elif name in ("entity", "source", "filter"):
            backfill = True
            breaking = breaking or name == "entity"
            extra = f"; old keys: {UNREACHABLE}" if name == "entity" else ""
            details.append(f"{name} changed: every feature {BACKFILL}{extra}")
        elif name == "ttl":
            details.append(f"ttl {before.ttl or 'none'} -> {after.ttl or 'none'}: {NO_REWRITE}")
        elif name == "online_versions":
            details.append(f"versions kept {before.online_versions or 'all'} -> {after.online_versions or 'all'}: "
                           "applies to the versioned store from the next write/compaction, no rewrite")
        elif name in ("online", "offline"):
            now = "on" if getattr(after, name) else "off"
            target = "online cache" if name == "online" else "offline log"
            consequence = f"fills from new events ({BACKFILL} for history)" if now == "on" else "no longer written"
            details.append(f"{target} turned {now}: {consequence}")
            backfill = backfill or now == "on"
        else:
            details.append(f"{name} changed: {METADATA}")
    return details, backfill, breaking


def _feature_details(before: FeatureTable, after: FeatureTable) -> Result:
    old = {f.name: f for f in before.features}
    new = {f.name: f for f in after.features}
    details: list[str] = []
    backfill = breaking = False
    for name, feature in new.items():
        if name not in old:
            backfill = True
            details.append(f"feature {name} added: {BACKFILL}" + (f" of {feature.window}" if feature.window else ""))
            continue
        prev = old[name]
        for attr in ("agg", "column", "window"):
            if getattr(prev, attr) != getattr(feature, attr):
                backfill = True
                was, now = getattr(prev, attr), getattr(feature, attr)
                details.append(f"{attr} of {name} changed {was} -> {now}: {BACKFILL}")
        if prev.description != feature.description:
            details.append(f"description of {name} changed: {METADATA}")
    for name in old.keys() - new.keys():
        breaking = True
        details.append(f"feature {name} removed: {UNREACHABLE}")
    if [n for n in before.feature_names if n in new] != [n for n in after.feature_names if n in old]:
        details.append("feature order changed: no data change")
    return details, backfill, breaking
