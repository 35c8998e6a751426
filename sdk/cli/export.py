"""`featurestore export`: a point-in-time training set from the offline log, and `--reproduce`.

    featurestore export --repo R (--training-set NAME | --features t:f,...) --samples PATH --out OUT
                        [--format parquet|arrow|avro|iceberg] [--as-of inclusive|strict] [--chunk-rows N]
                        [--engine duckdb|flink]
    featurestore export --reproduce MANIFEST [--out OUT] [--format F]

Built on ``FeatureStore.offline`` (sdk/offline.py) and the point-in-time engine
(featurestore/pit/). Bad input is a FeatureStoreError naming what and where; the main group
prints it and exits 1. A reproduction whose rows differ from the original exits 1 too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from featurestore.pit.manifest import Manifest
    from sdk.store import FeatureStore

# featurestore.pit.writers.FORMATS (not imported here: `featurestore --help` stays free of pyarrow)
FORMATS = ("parquet", "arrow", "avro", "iceberg")
_FILE_SUFFIX = {"parquet": "parquet", "arrow": "arrow", "avro": "avro"}


@click.command("export")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="the feature repo directory (holds featurestore.yaml)")
@click.option("--profile", default=None, help="profile of featurestore.yaml (default: its own)")
@click.option("--training-set", default=None, metavar="NAME",
              help="a training set of the registry: its sample table's features, then its own")
@click.option("--features", multiple=True, metavar="TABLE:FEATURE,...",
              help="feature references, comma-separated or repeated (TABLE:* for all of a table)")
@click.option("--samples", type=click.Path(path_type=Path), default=None,
              help="a Parquet file or a directory of them: the key columns and the event time of each sample")
@click.option("--event-time", default=None, metavar="COLUMN", help="the samples' event-time column  [default: ts]")
@click.option("--out", default=None, metavar="PATH|TABLE",
              help="the output file, or the Iceberg table identifier with --format iceberg")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="output format  [default: parquet; with --reproduce the original's]")
@click.option("--as-of", type=click.Choice(["inclusive", "strict"]), default=None,
              help="a sample at T sees versions at <= T or < T  [default: the training set's, else inclusive]")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None,
              help="samples joined per chunk (by event-time range)  [default: 2,000,000]")
@click.option("--engine", type=click.Choice(["duckdb", "flink"]), default="duckdb", show_default=True,
              help="duckdb: on this machine; flink: a Flink batch job (the profile's cluster with flink.mode remote)")
@click.option("--manifest", "manifest_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where the manifest goes  [default: OUT.manifest.json; "
                   "for Iceberg: .featurestore/exports/ in the repo]")
@click.option("--reproduce", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="MANIFEST",
              help="run the export of MANIFEST again (same samples, registry version, snapshots and options) "
                   "and say whether the rows equal the original's")
def export(
    repo: Path, profile: str | None, training_set: str | None, features: tuple[str, ...], samples: Path | None,
    event_time: str | None, out: str | None, fmt: str | None, as_of: str | None, chunk_rows: int | None,
    engine: str, manifest_out: Path | None, reproduce: Path | None,
) -> None:
    """Export a point-in-time training set (samples + features as of each sample's time) with a manifest."""
    from sdk.store import FeatureStore

    if reproduce is not None:
        given = {"--training-set": training_set, "--features": features, "--samples": samples,
                 "--event-time": event_time, "--as-of": as_of, "--chunk-rows": chunk_rows}
        extra = [name for name, value in given.items() if value]
        if extra:
            raise click.UsageError(f"--reproduce takes everything from the manifest; drop {', '.join(extra)}")
        with FeatureStore(repo, profile) as fs:
            _reproduce(fs, reproduce, out, fmt, manifest_out)
        return
    if (training_set is None) == (not features):
        raise click.UsageError("give exactly one of --training-set NAME and --features TABLE:FEATURE,...")
    if out is None:
        raise click.UsageError("--out is required")
    with FeatureStore(repo, profile) as fs:
        _export(fs, training_set, _split_refs(features), samples, event_time or "ts", out, fmt or "parquet", as_of,
                chunk_rows, manifest_out, engine)


def _split_refs(features: Sequence[str]) -> list[str]:
    return [ref.strip() for item in features for ref in item.split(",") if ref.strip()]


def _export(
    fs: FeatureStore, training_set: str | None, refs: list[str], samples: Path | None, event_time: str, out: str,
    fmt: str, as_of: str | None, chunk_rows: int | None, manifest_out: Path | None, engine: str = "duckdb",
) -> None:
    from featurestore.config import STATE_DIR
    from featurestore.errors import ValidationError
    from featurestore.pit.engine import ExportOptions
    from sdk.features import expand_refs, resolve

    started = time.perf_counter()
    definitions = fs.registry.definitions()
    strict = as_of == "strict"
    what = f"features {', '.join(refs)}"
    if training_set is not None:
        found = definitions.training_set(training_set)
        if as_of is None:
            strict = found.strict
        if samples is None and found.sample_table is not None:
            samples, event_time = _stored_samples(fs, found.sample_table)
            what_samples = f"samples of {found.sample_table} from the offline log, saved as {samples}"
            click.echo(what_samples)
        if samples is None:
            raise ValidationError(
                f"--samples is required: training set {training_set!r} makes samples from source "
                f"{found.source!r}, which stores none",
                location=f"training set {training_set}",
                hint="pass --samples with a Parquet file or directory of labelled samples",
            )
        refs = expand_refs(definitions, training_set)
        what = f"training set {training_set}"
    if samples is None:
        raise click.UsageError("--samples is required")
    request = resolve(definitions, refs)  # unknown tables and features: NotFoundError, before reading samples
    resolved = time.perf_counter()
    _check_samples(samples, event_time, request.key_columns)
    checked = time.perf_counter()

    options = ExportOptions(strict=strict, chunk_rows=chunk_rows or ExportOptions.chunk_rows)
    if manifest_out is None and fmt == "iceberg":
        manifest_out = fs.repo / STATE_DIR / "exports" / f"{out}.manifest.json"
    manifest = fs.offline.export(samples, refs, output=out, format=fmt, event_time=event_time, options=options,
                                 manifest_path=manifest_out, engine=engine)
    done = time.perf_counter()
    written = manifest_out or Path(f"{manifest.output['target']}.manifest.json")
    click.echo(f"exported {manifest.row_count:,} rows x {_count(len(manifest.features), 'feature')} ({what}, "
               f"as of {'strict' if strict else 'inclusive'}, engine {engine})")
    _describe(fs, manifest, written.resolve())
    click.echo(f"  timings: registry {resolved - started:.2f} s, samples check {checked - resolved:.2f} s, "
               f"join + write {done - checked:.2f} s, total {done - started:.2f} s")


def _stored_samples(fs: FeatureStore, sample_table: str) -> tuple[Path, str]:
    """The samples real-time production stored for ``sample_table`` (its base columns and label),
    saved as a Parquet file under the repo's state directory so the manifest can name them and
    ``--reproduce`` reads the same rows; with the base source's event-time column."""
    import datetime as dt

    import pyarrow.parquet as pq

    from featurestore.config import STATE_DIR
    from featurestore.offline import samples as stored

    definitions = fs.registry.definitions()
    table = definitions.sample_table(sample_table)
    base = definitions.source(table.base_source)
    columns = [*(table.columns or base.columns), table.label]
    data = stored.read(fs.config.offline_log, sample_table).select(columns)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    path = fs.repo / STATE_DIR / "exports" / f"{sample_table}.samples.{stamp}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path)
    return path, base.event_time


def _check_samples(samples: Path, event_time: str, key_columns: Sequence[str]) -> None:
    """Each sample file has the event-time column and the key columns (cheap: schemas only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurestore.errors import NotFoundError, ValidationError
    from featurestore.pit.samples import parquet_files

    if not samples.exists():
        raise NotFoundError(f"--samples {samples}: no such file or directory")
    for path in parquet_files(samples):
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValidationError(f"not a readable Parquet file ({exc})", location=f"samples {path}") from None
        if event_time not in names:
            raise ValidationError(
                f"no event-time column {event_time!r} (columns: {names})", location=f"samples {path}",
                hint="--event-time COLUMN names the column holding each sample's time",
            )
        missing = [k for k in key_columns if k not in names]
        if missing:
            raise ValidationError(f"no key column {missing} (the features need {list(key_columns)}; columns: {names})",
                                  location=f"samples {path}")


def _reproduce(fs: FeatureStore, manifest_path: Path, out: str | None, fmt: str | None,
               manifest_out: Path | None) -> None:
    from featurestore.pit.manifest import Manifest, compare_hashes

    started = time.perf_counter()
    original = Manifest.read(manifest_path)  # a clear error when it is missing or not a manifest
    fmt = fmt or str(original.output["format"])
    target = out or _reproduction_target(original, fmt, manifest_path)
    if manifest_out is None and fmt == "iceberg":
        manifest_out = manifest_path.resolve().parent / f"{target}.manifest.json"
    again = fs.offline.reproduce(manifest_path, output=target, format=fmt, manifest_path=manifest_out)
    done = time.perf_counter()
    written = manifest_out or Path(f"{again.output['target']}.manifest.json")
    click.echo(f"reproduced {manifest_path}: {again.row_count:,} rows x {_count(len(again.features), 'feature')}")
    _describe(fs, again, written.resolve())
    click.echo(f"  timings: total {done - started:.2f} s")
    same = compare_hashes(original.content_hash, again.content_hash)
    counts = f"{original.row_count:,} rows then, {again.row_count:,} now"
    if same is None:
        why = ("the original manifest records no content hash" if not original.content_hash
               else f"the hashes were made differently ({original.content_hash.get('algorithm')!r})")
        if original.row_count != again.row_count:
            _differ(f"row counts differ: {counts}")
        click.echo(f"  rows: {counts}; values not compared: {why}")
        return
    if same and original.row_count == again.row_count:
        click.secho(f"  rows equal the original's: {counts}, content hash {_short(again)}", fg="green")
        return
    _differ(f"{counts}; content hash {_short(original)} then, {_short(again)} now")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _differ(detail: str) -> None:
    click.secho(f"error: the reproduced rows differ from the original's: {detail}", fg="red", err=True)
    raise SystemExit(1)


def _short(manifest: Manifest) -> str:
    return (manifest.content_hash or {}).get("value", "none")[:16]


def _reproduction_target(original: Manifest, fmt: str, manifest_path: Path) -> str:
    """Next to the original: ``train.parquet`` -> ``train.reproduced.parquet``; a table gets ``_reproduced``."""
    target = str(original.output["target"])
    was_table = original.output["format"] == "iceberg"
    if fmt == "iceberg":
        if not was_table:
            raise click.UsageError("--out TABLE is required to reproduce a file export into Iceberg")
        return f"{target}_reproduced"
    if was_table:
        return str(manifest_path.resolve().parent / f"{target}.reproduced.{_FILE_SUFFIX[fmt]}")
    path = Path(target)
    return str(path.with_name(f"{path.stem}.reproduced.{_FILE_SUFFIX[fmt]}"))


def _describe(fs: FeatureStore, manifest: Manifest, manifest_path: Path) -> None:
    fmt = manifest.output["format"]
    where = manifest.output["target"]
    if fmt == "iceberg":
        where = f"Iceberg table {where} (catalog {fs.config.offline_log.catalog_uri})"
    click.echo(f"  to {where} ({fmt})")
    snapshots = ", ".join(f"{t}@{'empty' if s is None else s}" for t, s in sorted(manifest.snapshot_ids.items()))
    click.echo(f"  registry version {manifest.registry_version or '?'}; offline log snapshots: {snapshots or 'none'}")
    click.echo(f"  manifest: {manifest_path}")
