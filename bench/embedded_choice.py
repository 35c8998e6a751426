"""Which engine for the embedded versioned store? SQLite vs RocksDB (rocksdict) vs LMDB.

    .venv/bin/python bench/embedded_choice.py   (needs: pip install rocksdict lmdb)

The same cell layout on each (key | feature | big-endian version_ms | seq -> value), 200k cells
put in batches of 10k, then as-of reads of 100 keys x 10 features (seek to T, step back).
Raw engine cost only; featurestore.storage.embedded adds Arrow decoding on top.
"""
# ruff: noqa
import os, shutil, sqlite3, struct, time, random, tempfile
import lmdb, rocksdict
N_KEYS, N_FEAT, N_TS = 2000, 10, 10   # 200k cells
BE = struct.Struct(">q"); BE2 = struct.Struct(">qq")
cells = []
seq = 0
for t in range(N_TS):
    for k in range(N_KEYS):
        seq += 1
        for f in range(N_FEAT):
            cells.append((str(k).encode(), f, 1_000_000 + t * 1000, seq, BE.pack(k * f)))
random.seed(1)
def pref(k, f): return struct.pack(">H", len(k)) + k + bytes([f])
BATCH = 10_000
def bench(name, put, asof):
    t0 = time.perf_counter()
    for i in range(0, len(cells), BATCH):
        put(cells[i:i + BATCH])
    dt = time.perf_counter() - t0
    qs = [[str(random.randrange(N_KEYS)).encode() for _ in range(100)] for _ in range(200)]
    t1 = time.perf_counter()
    for q in qs:
        asof(q, 1_004_500)
    dq = (time.perf_counter() - t1) / len(qs)
    print(f"{name:10s} put {len(cells)/dt:>10,.0f} cells/s   as-of 100 keys x {N_FEAT} feats: {dq*1000:6.2f} ms")

d = tempfile.mkdtemp()
# SQLite
con = sqlite3.connect(os.path.join(d, "s.db"), isolation_level=None)
con.execute("PRAGMA journal_mode=WAL"); con.execute("PRAGMA synchronous=NORMAL")
con.execute("CREATE TABLE v(k BLOB, f INT, ts INT, seq INT, val BLOB, PRIMARY KEY(k,f,ts)) WITHOUT ROWID")
def s_put(b):
    con.execute("BEGIN")
    con.executemany("INSERT INTO v VALUES(?,?,?,?,?) ON CONFLICT(k,f,ts) DO UPDATE SET seq=excluded.seq, val=excluded.val WHERE excluded.seq>=v.seq", b)
    con.execute("COMMIT")
def s_asof(keys, T):
    out = []
    for k in keys:
        for f in range(N_FEAT):
            out.append(con.execute("SELECT ts,val FROM v WHERE k=? AND f=? AND ts<=? ORDER BY ts DESC LIMIT 1", (k, f, T)).fetchone())
    return out
bench("sqlite", s_put, s_asof)
# rocksdict
opt = rocksdict.Options(raw_mode=True)
opt.create_if_missing(True)
db = rocksdict.Rdict(os.path.join(d, "r"), opt)
wo = rocksdict.WriteOptions(); wo.disable_wal = False; wo.sync=False
def r_put(b):
    wb = rocksdict.WriteBatch(raw_mode=True)
    for k, f, ts, sq, v in b:
        wb.put(pref(k, f) + BE2.pack(ts, sq), v)
    db.write(wb, wo)
def r_asof(keys, T):
    out = []
    it = db.iter()
    for k in keys:
        for f in range(N_FEAT):
            p = pref(k, f)
            it.seek_for_prev(p + BE2.pack(T, 2**63 - 1))
            if it.valid() and it.key().startswith(p):
                out.append((it.key(), it.value()))
            else:
                out.append(None)
    return out
bench("rocksdict", r_put, r_asof)
# lmdb
env = lmdb.open(os.path.join(d, "l"), map_size=1 << 32, sync=False, writemap=True)
def l_put(b):
    with env.begin(write=True) as txn:
        txn.cursor().putmulti([(pref(k, f) + BE2.pack(ts, sq), v) for k, f, ts, sq, v in b])
def l_asof(keys, T):
    out = []
    with env.begin() as txn:
        c = txn.cursor()
        for k in keys:
            for f in range(N_FEAT):
                p = pref(k, f)
                if c.set_range(p + BE2.pack(T, 2**63 - 1)):
                    ok = c.prev()
                else:
                    ok = c.last()
                out.append(c.item() if ok and c.key().startswith(p) else None)
    return out
bench("lmdb", l_put, l_asof)
shutil.rmtree(d)
