"""The ``hdfs-replay`` connector jar: built from ``backfill/java/`` with Maven, found by path.

It lives beside the other Flink jars (:func:`featurestore.services.manager.flink_jars` lists it)
because every Flink job of the project may read history: the batch binding of a compiled plan
is the replay.

:func:`replay_jar` returns ``backfill/java/target/featurestore-replay.jar``, building it first
when it is missing or older than any file of the Maven module (``pom.xml``, ``src/``). The build
runs ``mvn -q -B package`` with the project's Maven repository (``.cache/m2``), under a file lock
so two processes never build at once, and logs to ``.cache/backfill-jar.mvn.log``. The jar holds
the connector, Avro and the shaded Hadoop client; Flink itself comes from PyFlink's own jars.

``make install`` calls ``python -m featurestore.services.replay_jar`` so the first backfill does not pay the
build (about 30 s, plus downloads on a cold ``.cache/m2``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from featurestore.errors import NotInstalledError, TerminalError

#: The Maven module of the connector (the backfill layer's Java half).
JAVA_DIR = Path(__file__).resolve().parents[2] / "backfill" / "java"
JAR_NAME = "featurestore-replay.jar"
# Maven writes here; the finished jar is then renamed to JAR_NAME, so a job starting while the jar
# is rebuilt reads the old jar or the new one, never half of one.
BUILD_NAME = "featurestore-replay-build.jar"
BUILD_TIMEOUT_S = 1200.0


def jar_path() -> Path:
    """Where the jar is (or will be) built."""
    return JAVA_DIR / "target" / JAR_NAME


def _cache_dir() -> Path:
    env = os.environ.get("FEATURESTORE_ROOT")
    return (Path(env).resolve() if env else JAVA_DIR.parents[1]) / ".cache"


def _newest_source_mtime() -> float:
    sources = [JAVA_DIR / "pom.xml", *(p for p in (JAVA_DIR / "src").rglob("*") if p.is_file())]
    return max(p.stat().st_mtime for p in sources)


def is_stale() -> bool:
    """True when the jar is missing or older than its sources."""
    jar = jar_path()
    return not jar.exists() or jar.stat().st_mtime < _newest_source_mtime()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def build() -> Path:
    """Run the Maven build now (under a lock) and return the jar."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise NotInstalledError(
            "building the hdfs-replay connector needs Maven (`mvn`) and a JDK 17",
            hint="apt-get install maven openjdk-17-jdk-headless",
        )
    if shutil.which("java") is None:
        raise NotInstalledError(
            "building the hdfs-replay connector needs Java 17", hint="apt-get install openjdk-17-jdk-headless"
        )
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "backfill-jar.mvn.log"
    with (cache / "backfill-jar.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_stale():  # another process built it while we waited
            return jar_path()
        argv = [mvn, "-q", "-B", "-Dstyle.color=never", f"-Dmaven.repo.local={cache / 'm2'}", "package"]
        with log.open("wb") as out:
            try:
                proc = subprocess.run(
                    argv, cwd=JAVA_DIR, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise TerminalError(
                    f"the Maven build of the hdfs-replay connector took over {BUILD_TIMEOUT_S:.0f}s",
                    hint=f"see {log}",
                ) from exc
        built = JAVA_DIR / "target" / BUILD_NAME
        if proc.returncode == 0 and built.exists():
            os.replace(built, jar_path())
        if proc.returncode != 0 or not jar_path().exists():
            raise TerminalError(
                f"the Maven build of the hdfs-replay connector failed (mvn exit {proc.returncode}; "
                f"needs Maven and Java 17, and Maven Central on first build):\n{_tail(log)}",
                hint=f"full log: {log}; rerun: cd {JAVA_DIR} && mvn -B package -Dmaven.repo.local={cache / 'm2'}",
            )
        return jar_path()


def replay_jar(*, build_if_stale: bool = True) -> Path:
    """The connector jar, built first if missing or older than its sources."""
    if not is_stale():
        return jar_path()
    if not build_if_stale:
        raise TerminalError(
            f"the hdfs-replay connector jar {jar_path()} is missing or stale", hint="run `make install`"
        )
    return build()


def replay_jar_url() -> str:
    """The jar as a ``file://`` URL, for PyFlink's ``pipeline.jars``."""
    return replay_jar().as_uri()


def main() -> int:
    print(replay_jar())
    return 0


if __name__ == "__main__":
    sys.exit(main())
