#!/usr/bin/env python3
"""Simulated listeners with a known taste, and how well `soundalike taste` learns it.

    python3 scripts/eval/taste_eval.py --store STORE --logmel-store LSTORE --likes-groups 2 --out OUT.json \
        [--bin target/release/soundalike] [--marks 5,10,20,50] [--seeds 0,...,9] [--name NAME]

STORE and LSTORE are the two stores `scripts/eval/cluster_eval.py` builds (the model's vectors, and plain log-mel
statistics), whose `group` is the ground truth (style, soundtrack). For each seed a listener likes
`--likes-groups` groups drawn at random and dislikes the rest; with N marks (half likes, rounded up, half
dislikes, drawn at random; a seed's marks at a smaller N are the first of those at a larger N), `taste mark` + `taste discover` (the classifier kept by cross-validation) rank
every unmarked song. Scored on the unmarked songs: ROC AUC of the probability of liking, and precision@20 of
the top of `discover` (diversity caps off). Against (a) ranking by cosine similarity to the centroid of the
liked songs (`query --song ...`), and (b) the same classifier on the log-mel statistics store.
Prints a Markdown table (mean ± standard deviation over seeds) and writes OUT.json. Needs numpy.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{r.stderr}")
    return r.stdout


def auc(scores, truth):
    s = np.asarray(scores, dtype=float)
    t = np.asarray(truth, dtype=bool)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    # Ties share their mean rank.
    for v in np.unique(s):
        m = s == v
        ranks[m] = ranks[m].mean()
    pos, neg = t.sum(), (~t).sum()
    return (ranks[t].sum() - pos * (pos + 1) / 2) / (pos * neg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--logmel-store", required=True)
    ap.add_argument("--likes-groups", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", default="target/release/soundalike")
    ap.add_argument("--marks", default="5,10,20,50")
    ap.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--name", default=None)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="taste-eval-")
    run([a.bin, "export", a.store, "--format", "jsonl", "--out", f"{tmp}/all.jsonl"])
    rows = [json.loads(l) for l in open(f"{tmp}/all.jsonl")]
    group = {r["id"]: r["group"] for r in rows if r.get("group")}
    ids = sorted(group)
    groups = sorted(set(group.values()))
    results = {}
    for n in [int(x) for x in a.marks.split(",")]:
        for seed in [int(x) for x in a.seeds.split(",")]:
            # One listener per seed (the same liked groups and the same order of marks at every N: the
            # marks of a smaller N are the first of a larger one's).
            rng = np.random.default_rng(seed)
            liked_groups = set(rng.choice(groups, a.likes_groups, replace=False))
            pos = list(rng.permutation([i for i in ids if group[i] in liked_groups]))
            neg = list(rng.permutation([i for i in ids if group[i] not in liked_groups]))
            nl = (n + 1) // 2
            likes, dislikes = pos[:nl], neg[: n - nl]
            marked = set(likes) | set(dislikes)
            rest = [i for i in ids if i not in marked]
            truth = np.array([group[i] in liked_groups for i in rest])
            with open(f"{tmp}/marks.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["song", "mark"])
                w.writerows([(i, "like") for i in likes] + [(i, "dislike") for i in dislikes])
            for method, store in [("taste model (soundalike embedding)", a.store), ("taste model (log-mel statistics)", a.logmel_store)]:
                prof = f"{tmp}/prof-{abs(hash((n, seed, method)))}"
                run([a.bin, "taste", "mark", prof, "--store", store, "--from", f"{tmp}/marks.csv"])
                out = json.loads(run([a.bin, "taste", "discover", prof, "--store", store, "-k", str(len(ids)), "--max-per-artist", "0", "--json"]))
                p = {r["id"]: r["score"] for r in out["results"]}
                scores = [p[i] for i in rest]
                top = [r["id"] for r in out["results"]][:20]
                results.setdefault(n, {}).setdefault(method, []).append((auc(scores, truth), np.mean([group[i] in liked_groups for i in top])))
            # (a) cosine similarity to the centroid of the liked songs.
            q = [a.bin, "query", a.store, "-k", str(len(ids)), "--json", "--exact"]
            for i in likes:
                q += ["--song", i]
            out = json.loads(run(q))
            sim = {r["id"]: r["score"] for r in out["results"]}
            scores = [sim[i] for i in rest]
            ranked = [r["id"] for r in out["results"] if r["id"] not in marked][:20]
            results[n].setdefault("similarity to the liked songs' centroid", []).append((auc(scores, truth), np.mean([group[i] in liked_groups for i in ranked])))
            print(f"  {n} marks, seed {seed} done", file=sys.stderr, flush=True)
    summary = {str(n): {m: {"auc_mean": float(np.mean([x[0] for x in v])), "auc_std": float(np.std([x[0] for x in v])),
                            "p20_mean": float(np.mean([x[1] for x in v])), "p20_std": float(np.std([x[1] for x in v]))}
                        for m, v in ms.items()} for n, ms in results.items()}
    json.dump({"store": a.store, "songs": len(ids), "groups": len(groups), "liked_groups": a.likes_groups, "seeds": a.seeds, "results": summary}, open(a.out, "w"), indent=1)
    name = a.name or a.store
    print(f"\n{name}: {len(ids)} songs, listener likes {a.likes_groups} of {len(groups)} groups; seeds {a.seeds}\n")
    print("| marks | ranking | ROC AUC | precision@20 |")
    print("|---|---|---|---|")
    for n, ms in summary.items():
        for m, r in ms.items():
            print(f"| {n} | {m} | {r['auc_mean']:.3f} ± {r['auc_std']:.3f} | {r['p20_mean']:.2f} ± {r['p20_std']:.2f} |")


if __name__ == "__main__":
    main()
