#!/usr/bin/env bash
# ANN benchmark: the same unit vectors through soundalike's index (its own graph construction, and hnsw_rs's
# construction searched by the same code; and its graph keeping the vectors as 16-bit fixed point, `--vectors i16`),
# hnswlib and faiss HNSW, side by side in one run: build time
# (2 threads), single-thread queries/s and recall@10 at several ef, memory over the raw vectors.
# The hnsw_rs build is skipped above 200,000 vectors (about 25 minutes at 1M on 2 cores).
#   bash scripts/bench/bench_ann.sh [N=100000] [OUT=target/bench_ann.json]
#   bash scripts/bench/bench_ann.sh STORE_DIR [OUT]    real song vectors of a store (a tenth held out as queries)
# Needs: pip install numpy hnswlib faiss-cpu. With SOUNDALIKE_BENCH_PG=postgres://... (a scratch database with
# pgvector 0.8), pgvector joins the table (crates/db/examples/bench_pgvector.rs; ef up to its limit, 1000).
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-100000}"; out="${2:-target/bench_ann.json}"; dim=128; nq=1000
tmp="$(mktemp -d)"
if [ -d "$n" ]; then
  # Real song vectors: a store's embeddings (exported as .npy), a tenth of them held out as queries.
  cargo build -q
  target/debug/soundalike export --format npy --out "$tmp/real.npy" "$n" >/dev/null
  read -r n dim nq < <(python3 - "$tmp/real.npy" "$tmp/v.f32" <<'PY'
import sys, numpy as np
v = np.load(sys.argv[1]).astype(np.float32)
np.random.default_rng(0).shuffle(v)          # queries drawn from the whole library, not one folder
v.tofile(sys.argv[2])
print(v.shape[0], v.shape[1], max(1, v.shape[0] // 10))
PY
)
else
python3 - "$n" "$dim" "$tmp/v.f32" <<'PY'
import sys, numpy as np
n, d, p = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
v = rng.standard_normal((n, d)).astype(np.float32)
v /= np.linalg.norm(v, axis=1, keepdims=True)
v.tofile(p)
PY
fi
cargo build --release -q -p soundalike-recommend --example bench_ann
ours=$(RAYON_NUM_THREADS=2 target/release/examples/bench_ann "$n" "$dim" "$nq" "$tmp/v.f32" native)
ours="$ours"$'\n'"$(RAYON_NUM_THREADS=2 target/release/examples/bench_ann "$n" "$dim" "$nq" "$tmp/v.f32" native i16)"
if [ "$n" -le 200000 ]; then
  ours="$ours"$'\n'"$(RAYON_NUM_THREADS=2 target/release/examples/bench_ann "$n" "$dim" "$nq" "$tmp/v.f32" hnsw-rs)"
fi
theirs=$(python3 - "$n" "$dim" "$nq" "$tmp/v.f32" <<'PY'
import json, resource, sys, time
import numpy as np
n, d, nq, p = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
v = np.fromfile(p, dtype=np.float32).reshape(n, d)
base, q = v[:-nq], v[-nq:]
truth = np.argsort(-(q @ base.T), axis=1)[:, :10]
def recall(I): return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, truth)]))
out = []
import hnswlib
def rss():  # current resident memory in MB (peak RSS would hide the index behind the truth matrix)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS:")).split()[1]) / 1024
r0 = rss(); t = time.perf_counter()
ix = hnswlib.Index(space="ip", dim=d); ix.init_index(max_elements=len(base), M=16, ef_construction=200)
ix.set_num_threads(2); ix.add_items(base); b = time.perf_counter() - t
ix.set_num_threads(1); rows = []
ix.set_ef(64); [ix.knn_query(x, k=10) for x in q[:100]]  # warm-up, untimed (as for soundalike)
for ef in [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120]:
    ix.set_ef(max(ef, 10)); t = time.perf_counter(); I = np.array([ix.knn_query(x, k=10)[0][0] for x in q]); s = time.perf_counter() - t
    rows.append({"ef": ef, "recall_at_10": round(recall(I), 4), "qps": round(nq / s)})
out.append({"tool": "hnswlib", "build_seconds": round(b, 2), "index_mem_mb": round(rss() - r0, 1), "results": rows})
import faiss
faiss.omp_set_num_threads(2); r0 = rss(); t = time.perf_counter()
fx = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT); fx.hnsw.efConstruction = 200; fx.add(base); b = time.perf_counter() - t
faiss.omp_set_num_threads(1); rows = []
fx.hnsw.efSearch = 64; [fx.search(x[None, :], 10) for x in q[:100]]  # warm-up, untimed
for ef in [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120]:
    fx.hnsw.efSearch = ef; t = time.perf_counter(); I = np.vstack([fx.search(x[None, :], 10)[1] for x in q]); s = time.perf_counter() - t
    rows.append({"ef": ef, "recall_at_10": round(recall(I), 4), "qps": round(nq / s)})
out.append({"tool": "faiss IndexHNSWFlat", "build_seconds": round(b, 2), "index_mem_mb": round(rss() - r0, 1), "results": rows})
print(json.dumps(out))
PY
)
# pgvector on the same vectors, when a scratch database is named (its soundalike tables are dropped).
if [ -n "${SOUNDALIKE_BENCH_PG:-}" ]; then
  cargo build --release -q -p soundalike-db --example bench_pgvector
  pg=$(target/release/examples/bench_pgvector "$SOUNDALIKE_BENCH_PG" "$n" "$tmp/v.f32" | python3 -c "import json,sys; print(json.dumps([json.loads(l) for l in sys.stdin]))")
  theirs=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1]) + json.loads(sys.argv[2])))" "$theirs" "$pg")
fi
mkdir -p "$(dirname "$out")"
python3 - "$out" "$ours" "$theirs" <<'PY'
import json, sys
ours = [json.loads(l) for l in sys.argv[2].splitlines() if l.strip()]; theirs = json.loads(sys.argv[3])
doc = {"n": ours[0]["n"], "dim": ours[0]["dim"], "m": 16, "ef_construction": 200, "raw_vectors_mb": ours[0]["raw_vectors_mb"], "tools": ours + theirs}
json.dump(doc, open(sys.argv[1], "w"), indent=1)
print(f"{doc['n']} x {doc['dim']} unit vectors, raw {doc['raw_vectors_mb']} MB; M=16, efC=200; build 2 threads, queries 1 thread")
for t in doc["tools"]:
    print(f"\n{t['tool']}: build {t['build_seconds']} s, index memory ~{t['index_mem_mb']} MB (RSS growth)"
          + (f", graph arrays {t['search_mem_mb']} MB, {t['mean_layer0_links']} links per vector on layer 0" if "search_mem_mb" in t else ""))
    for r in t["results"]:
        print(f"  ef {r['ef']:>4}: recall@10 {r['recall_at_10']:.4f}  {r['qps']:>7} q/s")
PY
rm -rf "$tmp"
