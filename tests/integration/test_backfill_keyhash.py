"""The replay's Java partitioner is byte-identical to featurestore.keys (Kafka's murmur2).

Runs ``featurestore.backfill.replay.KeyHash`` from the connector jar (a JVM, no services) over many
encoded keys: ASCII, multi-byte UTF-8, every length mod 4, ints, negative ints, multi-column keys.
"""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest

from featurestore.keys import encode_key, murmur2, partition_for
from featurestore.services.replay_jar import replay_jar

PARTITIONS = (1, 2, 7, 12, 64, 1000)


def _keys() -> list[bytes]:
    rng = random.Random(7)
    alphabet = "abcXYZ019_-:/ éüß中文字🙂"
    keys: list[bytes] = [encode_key([v]) for v in (0, 1, -1, 42, 2**31, -(2**63), 10**18)]
    keys += [encode_key([f"u{i}"]) for i in range(2_000)]
    keys += [encode_key([i]) for i in range(-500, 1_500)]
    for _ in range(3_000):
        parts: list[object] = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.4:
                parts.append(rng.randint(-(10**12), 10**12))
            else:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 17))))
        keys.append(encode_key(parts))
    return keys


@pytest.mark.parametrize("partitions", PARTITIONS)
def test_java_partitions_equal_python_partition_for(partitions: int) -> None:
    java = shutil.which("java")
    assert java is not None, "Java 17 is needed"
    keys = _keys()
    stdin = b"\n".join(keys) + b"\n"
    proc = subprocess.run(
        [java, "-cp", str(replay_jar()), "featurestore.backfill.replay.KeyHash", str(partitions)],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=True,
    )
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == len(keys)
    for key, line in zip(keys, lines, strict=True):
        hashed, partition = (int(x) for x in line.split())
        assert hashed == murmur2(key), key
        assert partition == partition_for(key, partitions), key
