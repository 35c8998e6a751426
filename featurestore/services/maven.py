"""Java classpaths resolved from Maven Central through the POMs in `featurestore/services/maven/`.

A resolved classpath is cached in `.cache/classpath/<name>.txt` and reused while it is newer than
its POM and every jar in it still exists; jars live in `.cache/m2` (`-Dmaven.repo.local`). A file
lock keeps two processes from resolving the same POM at once.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from featurestore.errors import ServiceStartError
from featurestore.services.process import Layout, log_tail

POM_DIR = Path(__file__).resolve().parent / "maven"
RESOLVE_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Resolution:
    """A resolved classpath and how long resolving it took (0 when the cache was valid)."""

    name: str
    jars: tuple[str, ...]
    seconds: float
    downloaded: bool


def pom_path(name: str) -> Path:
    return POM_DIR / f"{name}.xml"


def _cached(cp_file: Path, pom: Path) -> tuple[str, ...] | None:
    if not cp_file.exists() or cp_file.stat().st_mtime < pom.stat().st_mtime:
        return None
    jars = tuple(j for j in cp_file.read_text().strip().split(":") if j)
    if not jars or not all(Path(j).exists() for j in jars):
        return None
    return jars


def resolve(name: str, layout: Layout, *, service: str | None = None) -> Resolution:
    """The jars of `maven/<name>.xml`, downloading them on first use."""
    pom = pom_path(name)
    who = service or name
    if not pom.exists():
        raise ServiceStartError(who, f"no POM at {pom}")
    cp_dir = layout.cache_dir / "classpath"
    cp_dir.mkdir(parents=True, exist_ok=True)
    cp_file = cp_dir / f"{name}.txt"
    start = time.monotonic()
    with (cp_dir / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jars = _cached(cp_file, pom)
        if jars is not None:
            return Resolution(name, jars, time.monotonic() - start, downloaded=False)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceStartError(who, "Maven (`mvn`) is not on PATH; install it (apt-get install maven)")
        log = cp_dir / f"{name}.mvn.log"
        tmp = cp_dir / f"{name}.txt.tmp"
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            f"-Dmaven.repo.local={layout.cache_dir / 'm2'}",
            "dependency:build-classpath",
            f"-Dmdep.outputFile={tmp}",
        ]
        with log.open("wb") as out:
            try:
                proc = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=RESOLVE_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired:
                raise ServiceStartError(who, f"resolving {pom.name} took over {RESOLVE_TIMEOUT_S:.0f}s") from None
        if proc.returncode != 0 or not tmp.exists():
            reason = f"Maven could not resolve {pom.name} (exit {proc.returncode})"
            raise ServiceStartError(who, reason, log_tail([log]))
        tmp.replace(cp_file)
        jars = _cached(cp_file, pom)
        if jars is None:
            raise ServiceStartError(who, f"Maven resolved {pom.name} but some jars are missing", cp_file.read_text())
        return Resolution(name, jars, time.monotonic() - start, downloaded=True)
