#!/usr/bin/env python3
"""Retrieval check of a store: for each query song, what share of its k nearest neighbours (cosine) come from
the same group (e.g. the same soundtrack), against the share expected by chance.

    soundalike export STORE --format jsonl --out songs.jsonl
    python3 scripts/eval/retrieval_eval.py songs.jsonl [--split models/default/split.json --part test] [-k 5]

With --split, only songs of that part are queries (songs the model never trained on); every song is a candidate.
"""
import argparse, json
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("jsonl"); ap.add_argument("--split"); ap.add_argument("--part", default="test"); ap.add_argument("-k", type=int, default=5)
a = ap.parse_args()
songs = [json.loads(l) for l in open(a.jsonl)]
ids = [s["id"] for s in songs]; groups = np.array([s.get("group") or s["id"].split("/")[0] for s in songs])
V = np.array([s["vector"] for s in songs], dtype=np.float32)
queries = range(len(songs))
if a.split:
    part = json.load(open(a.split))["assignment"]
    # split ids are relative to the training library; match by suffix
    queries = [i for i, s in enumerate(ids) if any(s.endswith(k) or k.endswith(s) for k, v in part.items() if v == a.part)]
S = V @ V.T
hits, chance = [], []
for i in queries:
    order = [j for j in np.argsort(-S[i]) if j != i][: a.k]
    hits.append(np.mean(groups[order] == groups[i]))
    chance.append((np.sum(groups == groups[i]) - 1) / (len(songs) - 1))
print(json.dumps({"queries": len(hits), "k": a.k, "same_group_at_k": round(float(np.mean(hits)), 3), "chance": round(float(np.mean(chance)), 3)}))
