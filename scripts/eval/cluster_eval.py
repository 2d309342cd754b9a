#!/usr/bin/env python3
"""How well `soundalike clusters` recovers a library's true groups, against two baselines.

    python3 scripts/eval/cluster_eval.py --library DIR --labels CSV --label-column COL --out OUT_DIR \
        [--bin target/release/soundalike] [--model models/default] [--k K] [--seeds 0,1,2,3,4]

1. Embeds the library with the model (the label column becomes each song's group in the store).
2. Runs `soundalike clusters STORE --k K` (K defaults to the number of true groups) for several seeds,
   and once with k chosen by the command's own rule (--k-range 2..20).
3. Builds a second store whose vectors are plain log-mel statistics (mean and standard deviation of each
   of the 128 mel bands over the song, from `soundalike spectrogram --npy`, z-scored over the library,
   unit length) and runs the same `clusters` command on it: what the learned embedding adds.
4. Scores each clustering against the true groups: adjusted Rand index (ARI: 0 = chance, 1 = the same
   partition) and normalised mutual information (NMI, arithmetic mean normalisation as scikit-learn's
   default); chance = the model's clusters against shuffled labels (100 shuffles).
Writes OUT_DIR/cluster_eval.json and prints a Markdown table. Needs numpy.
"""
import argparse
import csv
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode not in (0, 1):
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{r.stderr}")
    return r.stdout


def comb2(x):
    return x * (x - 1) / 2.0


def contingency(a, b):
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    m = np.zeros((len(ua), len(ub)))
    np.add.at(m, (ia, ib), 1)
    return m


def ari(a, b):
    m = contingency(a, b)
    n = m.sum()
    s = comb2(m).sum()
    sa, sb = comb2(m.sum(1)).sum(), comb2(m.sum(0)).sum()
    expected = sa * sb / comb2(n)
    top = 0.5 * (sa + sb)
    return 1.0 if top == expected else (s - expected) / (top - expected)


def nmi(a, b):
    m = contingency(a, b)
    n = m.sum()
    p = m / n
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum()
    ha = -(pa[pa > 0] * np.log(pa[pa > 0])).sum()
    hb = -(pb[pb > 0] * np.log(pb[pb > 0])).sum()
    return 0.0 if ha + hb == 0 else 2 * mi / (ha + hb)


def exported(bin_, store, out):
    run([bin_, "export", store, "--format", "jsonl", "--out", out])
    return [json.loads(l) for l in open(out)]


def cluster(bin_, store, args, out):
    r = json.loads(run([bin_, "clusters", store, "--json", "--no-plots"] + args))
    rows = exported(bin_, store, out)
    return r, {x["id"]: x["cluster"] for x in rows}


def logmel_stats(bin_, root, ids, cache):
    have = dict(np.load(cache, allow_pickle=True).item()) if os.path.exists(cache) else {}
    todo = [i for i in ids if i not in have]

    def one(i):
        tmp = f"{cache}.{abs(hash(i))}.npy"
        run([bin_, "spectrogram", os.path.join(root, i), "--npy", tmp])
        m = np.load(tmp)
        os.remove(tmp)
        return i, np.concatenate([m.mean(1), m.std(1)]).astype(np.float32)

    with ThreadPoolExecutor(os.cpu_count() or 2) as ex:
        for n, (i, v) in enumerate(ex.map(one, todo)):
            have[i] = v
            if (n + 1) % 200 == 0:
                print(f"  log-mel statistics {n + 1}/{len(todo)}", file=sys.stderr, flush=True)
    np.save(cache, have, allow_pickle=True)
    return have


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--label-column", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", default="target/release/soundalike")
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--k", type=int)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--name", default=None)
    ap.add_argument("--confound", help="another CSV column (e.g. the instrument) the same clusterings are scored against")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    seeds = [int(s) for s in a.seeds.split(",")]
    store = os.path.join(a.out, "store")
    print("embedding", a.library, file=sys.stderr)
    run([a.bin, "embed", a.library, "--model", a.model, "--out", store, "--labels", a.labels, "--label-column", a.label_column,
         "--group-column", a.label_column, "--index", "false"])
    rows = exported(a.bin, store, os.path.join(a.out, "model.jsonl"))
    rows = [r for r in rows if r.get("group")]
    ids = [r["id"] for r in rows]
    truth = np.array([r["group"] for r in rows])
    k = a.k or len(set(truth))
    print(f"{len(ids)} songs with a label, {len(set(truth))} groups; k = {k}", file=sys.stderr)

    # The log-mel statistics store: same songs, same record fields, other vectors.
    lm = logmel_stats(a.bin, a.library, ids, os.path.join(a.out, "logmel_stats.npy"))
    m = np.stack([lm[i] for i in ids])
    m = (m - m.mean(0)) / (m.std(0) + 1e-6)
    m /= np.linalg.norm(m, axis=1, keepdims=True) + 1e-12
    lstore = os.path.join(a.out, "logmel-store")
    os.makedirs(lstore, exist_ok=True)
    head = json.load(open(os.path.join(store, "store.json")))
    head.update(model_fingerprint="logmel-stats-128x2", model_name="log-mel statistics", labels=[], dim=int(m.shape[1]))
    json.dump(head, open(os.path.join(lstore, "store.json"), "w"))
    with open(os.path.join(lstore, "songs.jsonl"), "w") as f:
        f.write(json.dumps({"op": "model", "model_fingerprint": head["model_fingerprint"]}) + "\n")
        for r, v in zip(rows, m):
            song = {k2: r[k2] for k2 in ("id", "title", "artist", "album", "genre", "group", "duration_s", "fingerprint", "size", "mtime")}
            song.update(probs=[], vector=[float(x) for x in v])
            f.write(json.dumps({"op": "put", "song": song}) + "\n")
    for lock in [os.path.join(lstore, ".lock"), os.path.join(lstore, "clusters.json")]:
        if os.path.exists(lock):
            os.remove(lock)

    confound = None
    if a.confound:
        by = {}
        for r in csv.DictReader(open(a.labels)):
            key = r.get("id") or r.get("file")
            by[key] = r[a.confound]
            by[os.path.splitext(key)[0]] = r[a.confound]
        confound = np.array([by.get(i, by.get(os.path.splitext(i)[0], "?")) for i in ids])

    def score(assign):
        pred = np.array([assign[i] for i in ids])
        return ari(truth, pred), nmi(truth, pred)

    def confound_nmi(assign):
        return nmi(confound, np.array([assign[i] for i in ids])) if confound is not None else None

    results = {"library": a.library, "songs": len(ids), "groups": int(len(set(truth))), "k": k, "seeds": seeds, "methods": {}}
    for name, st in [("soundalike embedding", store), ("log-mel statistics", lstore)]:
        per = []
        for s in seeds:
            r, assign = cluster(a.bin, st, ["--k", str(k), "--seed", str(s)], os.path.join(a.out, "c.jsonl"))
            per.append(score(assign) + (r["silhouette"], confound_nmi(assign) or 0.0))
        r, assign = cluster(a.bin, st, ["--k-range", "2..20", "--seed", str(seeds[0])], os.path.join(a.out, "c.jsonl"))
        auto = score(assign)
        arr = np.array(per)
        results["methods"][name] = {
            "ari_mean": arr[:, 0].mean(), "ari_std": arr[:, 0].std(), "nmi_mean": arr[:, 1].mean(), "nmi_std": arr[:, 1].std(),
            "silhouette_mean": arr[:, 2].mean(), "confound_nmi_mean": arr[:, 3].mean() if confound is not None else None, "auto_k": r["k"], "auto_reason": r["choice"]["reason"], "auto_ari": auto[0], "auto_nmi": auto[1],
        }
    # Chance: the embedding's clusters (first seed) against shuffled labels.
    _, assign = cluster(a.bin, store, ["--k", str(k), "--seed", str(seeds[0])], os.path.join(a.out, "c.jsonl"))
    pred = np.array([assign[i] for i in ids])
    rng = np.random.default_rng(7)
    ch = np.array([(ari(rng.permutation(truth), pred), nmi(rng.permutation(truth), pred)) for _ in range(100)])
    results["methods"]["chance (shuffled labels)"] = {"ari_mean": ch[:, 0].mean(), "ari_std": ch[:, 0].std(), "nmi_mean": ch[:, 1].mean(), "nmi_std": ch[:, 1].std()}
    json.dump(results, open(os.path.join(a.out, "cluster_eval.json"), "w"), indent=1)
    name = a.name or os.path.basename(os.path.normpath(a.library))
    print(f"\n{name}: {len(ids)} songs, {results['groups']} true groups, k = {k}, seeds {a.seeds}\n")
    extra = f" NMI with {a.confound} |" if a.confound else ""
    print("| vectors | ARI | NMI | mean silhouette | k by the rule (ARI / NMI there) |" + extra)
    print("|---|---|---|---|---|" + ("---|" if a.confound else ""))
    for n, r in results["methods"].items():
        auto = f"{r['auto_k']} ({r['auto_ari']:.3f} / {r['auto_nmi']:.3f})" if "auto_k" in r else "-"
        sil = f"{r['silhouette_mean']:.3f}" if "silhouette_mean" in r else "-"
        conf = (f" {r['confound_nmi_mean']:.3f} |" if r.get("confound_nmi_mean") is not None else " - |") if a.confound else ""
        print(f"| {n} | {r['ari_mean']:.3f} ± {r['ari_std']:.3f} | {r['nmi_mean']:.3f} ± {r['nmi_std']:.3f} | {sil} | {auto} |" + conf)


if __name__ == "__main__":
    main()
