"""Serving benchmark: the SDK's online read path in-process and over HTTP.

    .venv/bin/python bench/serving.py [--quick] [--redis URI]

A throwaway repo with one feature table of 50 features (half int64 counts, half double sums),
1,000 keys written to the embedded versioned store and the online cache. Measured:

* SDK in-process, 1 key x 50 features and 100 keys x 50 features: in-process cache warm (the
  serving steady state), and with it off (every lookup reads the ``memory://`` online cache);
  with ``--redis`` reachable also through Redis with the in-process cache off;
* the same 1 x 50 request building its Arrow table (``.table``), for the cost of Arrow;
* HTTP: ``POST /features/online`` for 1 key x 50 features, (a) uvicorn in a thread of this
  process and a keep-alive httpx client in the main thread (client and server share one GIL: an
  upper bound), (b) ``featurestore serve`` in its own process, as deployed, its in-process cache
  warmed with every key, measured with the standard library's keep-alive client (httpx costs
  about a millisecond of client-side Python per request).

Targets: p99 < 1 ms for 1 x 50 in-process, < 3 ms for 100 x 50 in-process, < 2 ms for 1 x 50 over
HTTP. p50/p99 over >= 10k requests (``--quick``: 2k). Prints a table, saves
bench/results/serving.json and prints the same JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.latency import timed
from featurestore.errors import FeatureStoreError
from featurestore.services import ports
from sdk.online import ServingOptions
from sdk.store import FeatureStore

RESULTS = Path(__file__).resolve().parent / "results" / "serving.json"
N_FEATURES = 50
N_KEYS = 1_000
T0 = 1_800_000_000_000
TABLE = "bench_features"

AVRO = {"type": "record", "name": "Event", "fields": [
    {"name": "user_id", "type": "string"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "v", "type": "double"},
]}


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "featurestore.yaml").write_text("project: bench\nprofile: local\n")
    features = "\n".join(
        f"      - {{name: f{i:02d}, " + ("agg: sum, column: v, window: 1d}" if i % 2 else "agg: count, window: 1h}")
        for i in range(N_FEATURES)
    )
    (repo / "defs.yaml").write_text(f"""entities:
  - name: user
    join_keys: [{{name: user_id, dtype: string}}]
sources:
  - name: events
    avro_schema: {json.dumps(AVRO)}
    event_time: ts
    stream: {{topic: bench.events, format: avro, partitions: 1}}
    batch: {{path: "events/dt={{date}}/*.avro", format: avro}}
feature_tables:
  - name: {TABLE}
    entity: user
    source: events
    ttl: 3650d
    features:
{features}
""")
    return repo


def load(fs: FeatureStore) -> None:
    schema = fs.registry.definitions().table_schema(TABLE)
    fs.stores.versioned.ensure_table(schema)
    fs.stores.online_cache.ensure_table(schema)
    columns: dict[str, Any] = {"user_id": [f"u{k}" for k in range(N_KEYS)], "version_ms": [T0] * N_KEYS,
                               "seq": list(range(N_KEYS))}
    for i, f in enumerate(schema.features):
        columns[f.name] = [k * 0.5 + i for k in range(N_KEYS)] if i % 2 else [k + i for k in range(N_KEYS)]
    batch = pa.table(columns, schema=schema.arrow_schema())
    fs.stores.versioned.put(TABLE, batch)
    fs.stores.online_cache.write(TABLE, batch)


def sdk_measures(fs: FeatureStore, label: str, n: int, out: dict[str, Any], rows: list[tuple[str, str, str]],
                 *, arrow: bool = False) -> None:
    refs = [f"{TABLE}:f{i:02d}" for i in range(N_FEATURES)]
    rng = random.Random(7)
    one = [[f"u{rng.randrange(N_KEYS)}"] for _ in range(n + 200)]
    many = [[f"u{k}" for k in rng.sample(range(N_KEYS), 100)] for _ in range(max(n // 5, 200) + 200)]
    latency = timed(n, lambda i: fs.online.get(refs, one[i]))
    rows.append((f"sdk {label}, 1 key x 50", latency.record(out, f"{label}_1x50"), "p99 < 1 ms"))
    m = max(n // 5, 200)
    latency = timed(m, lambda i: fs.online.get(refs, many[i]))
    rows.append((f"sdk {label}, 100 keys x 50 ({m} requests)", latency.record(out, f"{label}_100x50"), "p99 < 3 ms"))
    if arrow:
        latency = timed(n, lambda i: fs.online.get(refs, one[i]).table)
        rows.append((f"sdk {label}, 1 key x 50 + Arrow table", latency.record(out, f"{label}_1x50_arrow"), "-"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_measure(fs: FeatureStore, n: int, out: dict[str, Any], rows: list[tuple[str, str, str]]) -> None:
    import httpx
    import uvicorn

    from sdk.server import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(fs), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    refs = [f"{TABLE}:f{i:02d}" for i in range(N_FEATURES)]
    rng = random.Random(11)
    bodies = [json.dumps({"features": refs, "entities": {"user_id": [f"u{rng.randrange(N_KEYS)}"]}}).encode()
              for _ in range(n + 200)]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            headers = {"content-type": "application/json"}

            def call(i: int) -> None:
                response = client.post("/features/online", content=bodies[i], headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(response.text)

            latency = timed(n, call)
    finally:
        server.should_exit = True
        thread.join(10)
    rows.append(("http (uvicorn, same process), 1 key x 50", latency.record(out, "http_1x50"), "p99 < 2 ms"))


def http_process_measure(repo: Path, n: int, out: dict[str, Any], rows: list[tuple[str, str, str]]) -> None:
    """The same request to `featurestore serve` in its own process (as deployed: the client does not
    share the server's GIL). Its in-process cache is warmed with every key first (it reads the
    versioned store on a first lookup; the memory:// cache of this process is not its)."""
    import http.client
    import subprocess

    import httpx

    port = free_port()
    command = [str(Path(sys.executable).parent / "featurestore"), "serve", "--repo", str(repo), "--port", str(port),
               "--local-cache-s", "3600"]
    server = subprocess.Popen(command, cwd=str(Path(__file__).resolve().parent.parent),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    refs = [f"{TABLE}:f{i:02d}" for i in range(N_FEATURES)]
    rng = random.Random(12)
    bodies = [json.dumps({"features": refs, "entities": {"user_id": [f"u{rng.randrange(N_KEYS)}"]}}).encode()
              for _ in range(n + 200)]
    headers = {"content-type": "application/json"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"featurestore serve did not come up: {server.stderr.read()[-2000:]!r}")
                time.sleep(0.2)
            for key in range(N_KEYS):  # warm the server's in-process cache
                body = json.dumps({"features": refs, "entities": {"user_id": [f"u{key}"]}}).encode()
                client.post("/features/online", content=body, headers=headers)

        # The measure itself with the standard library's keep-alive client: httpx spends about a
        # millisecond of the client's own Python per request, which is not the server's latency.
        connection = http.client.HTTPConnection("127.0.0.1", port)

        def call(i: int) -> None:
            connection.request("POST", "/features/online", body=bodies[i], headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(body.decode())

        try:
            latency = timed(n, call)
        finally:
            connection.close()
    finally:
        server.terminate()
        server.wait(10)
    rows.append(
        ("http (featurestore serve, own process), 1 key x 50", latency.record(out, "http_process_1x50"), "p99 < 2 ms")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k requests per measure (under a minute)")
    parser.add_argument("--redis", default=ports.REDIS_URI, help="also measure through this Redis ('' to skip)")
    args = parser.parse_args()
    n = 2_000 if args.quick else 10_000
    out: dict[str, Any] = {"requests_per_measure": n, "quick": args.quick, "cpus": os.cpu_count(),
                           "load_avg_1m": round(os.getloadavg()[0], 2)}
    rows: list[tuple[str, str, str]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fsbench-serving-") as tmp:
        repo = make_repo(Path(tmp))
        warm = FeatureStore(repo, serving=ServingOptions(local_cache_s=3600))
        warm.registry.apply()
        load(warm)
        sdk_measures(warm, "local_cache", n, out, rows, arrow=True)
        http_measure(warm, n, out, rows)
        out["read_path_counters_local_cache"] = warm.online.stats().as_dict()
        http_process_measure(repo, n, out, rows)
        cold = FeatureStore(repo, serving=ServingOptions(local_cache_s=0))
        cold.stores._online = warm.stores.online_cache  # the same memory:// cache
        sdk_measures(cold, "memory_cache", n, out, rows)
        warm.close()
        if args.redis:
            prefix = f"fsbench{uuid.uuid4().hex[:8]}"
            try:
                redis = FeatureStore(repo, serving=ServingOptions(local_cache_s=0),
                                     online_cache=f"{args.redis}?prefix={prefix}")
                load(redis)
                sdk_measures(redis, "redis", n, out, rows)
                redis.stores.online_cache.drop_table(TABLE)
                redis.close()
            except FeatureStoreError as exc:
                out["redis_error"] = str(exc).splitlines()[0]
                rows.append(("sdk redis", "skipped: " + out["redis_error"], "-"))
    out["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    out["seconds"] = round(time.perf_counter() - started, 1)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':<34} target")
    for name, result, target in rows:
        print(f"{name:<{width}}  {result:<34} {target}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
