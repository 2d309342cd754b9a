#!/usr/bin/env python3
"""Score joined embeddings on the leave-productions-out queries of an earlier `lpo_eval.py` run.

Each part of a join is made unit length, multiplied by its weight, and the parts are put end to end; the
joined vectors are scored as lpo_eval.py scores any row (same queries, same candidates, P@1 / P@10 / tags@10,
mean over folds). A part is a training variant already run in OUT (its fold models' songs.jsonl: each fold's
queries see that fold's model) or a baseline: `msd`, `mtt` (musicnn's penultimate layers, z-scored) or
`logmel` (log-mel statistics, z-scored). Tells whether two embeddings know different things: a join that
scores above both parts does.

    python3 scripts/eval/lpo_join.py CORPUS --out target/lpo --folds-from R-rel10-msd \\
        --join "R-rel10-msd+0.5*msd" --join "R-rel10-msd+R-rel10-msd-seed1" [--mtt CORPUS/musicnn_mtt_penultimate.csv]
"""
import argparse, json, os, sys
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lpo_eval import candidates, corpus_rows, load_csv_vectors, load_jsonl, retrieval, unit, zscore  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("--out", default="target/lpo", help="lpo_eval.py's output folder")
    ap.add_argument("--folds-from", required=True, metavar="VARIANT",
                    help="the run whose results-VARIANT.json gives the folds' held-out productions")
    ap.add_argument("--join", action="append", required=True, metavar="[W*]PART+[W*]PART...")
    ap.add_argument("--mtt", help="musicnn MTT penultimate CSV (default CORPUS/musicnn_mtt_penultimate.csv)")
    ap.add_argument("--skip-ids", help="file of song ids to leave out, as given to lpo_eval.py")
    a = ap.parse_args()
    res = json.load(open(os.path.join(a.out, f"results-{a.folds_from}.json")))
    _, ids, prods, tags, msd_d = candidates(a.corpus, corpus_rows(a.corpus), a.skip_ids)
    assert len(ids) == res["corpus_songs"], f"{len(ids)} candidates here, {res['corpus_songs']} in the run: pass its --skip-ids"
    base = {"msd": lambda: zscore(np.stack([msd_d[x] for x in ids]))}
    mtt_path = a.mtt or os.path.join(a.corpus, "musicnn_mtt_penultimate.csv")
    if os.path.exists(mtt_path):
        mtt_d = load_csv_vectors(mtt_path)
        base["mtt"] = lambda: zscore(np.stack([mtt_d[x] for x in ids]))
    lm_path = os.path.join(a.out, "logmel_stats.npy")
    if os.path.exists(lm_path):
        lm = np.load(lm_path, allow_pickle=True).item()
        base["logmel"] = lambda: zscore(np.stack([lm[x] for x in ids]))

    def part(name, f):
        if name in base:
            return base[name]()
        e = load_jsonl(os.path.join(a.out, f"fold{f}", name, "songs.jsonl"))
        return np.stack([e[x] for x in ids])

    md = [f"Joined embeddings on the queries of results-{a.folds_from}.json ({len(ids)} candidates); parts unit length, then weighted.",
          "", "| join | P@1 | P@10 | P@10 per fold |", "|---|---|---|---|"]
    for spec in a.join:
        terms = []
        for t in spec.split("+"):
            w, _, name = t.rpartition("*")
            terms.append((float(w) if w else 1.0, name.strip()))
        p1, p10 = [], []
        for fr in res["per_fold"]:
            f, held = fr["fold"], set(fr["held_out"])
            q = np.array([i for i, p in enumerate(prods) if p in held])
            v = np.concatenate([w * unit(part(name, f)) for w, name in terms], 1)
            r = retrieval(unit(v), prods, tags, q)
            p1.append(r[:, 0].mean())
            p10.append(r[:, 1].mean())
        md.append(f"| {spec} | {np.mean(p1):.3f} | {np.mean(p10):.3f} ± {np.std(p10):.3f} | {' / '.join(f'{x:.3f}' for x in p10)} |")
        print(md[-1], flush=True)
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
