#!/usr/bin/env python3
"""Leave-productions-out yardstick: does a model find songs of the same production among music it never heard?

    python3 scripts/eval/lpo_eval.py CORPUS --out target/lpo [--folds 5] [--run 0,1] [--bin target/release/soundalike]
        [--train-args "--epochs 14 ..."] [--variant NAME] [--no-train]

CORPUS is what datasets/debian-music/build.py + tag.py made (labels.csv, teacher_tags.csv,
musicnn_penultimate.csv, previews/). Productions (Debian packages, ground truth) are dealt into --folds folds
with a fixed seed; for each fold in --run, a model is trained without that fold's productions (`soundalike
train ... --holdout-group P ...`, genre labels = the tagger's guess, tags = the tagger's probabilities),
every preview of the corpus is embedded with it, and each held-out song (first rendering only, `variant` 0, in a
production with at least --min-songs such songs) queries all variant-0 songs of the corpus. Reported per fold and
over folds (mean and spread):
  P@1, P@10   share of the 1 / 10 nearest neighbours (cosine) from the query's own production
  tags@10     mean cosine between the query's and its neighbours' musicnn tag vectors (a tagger's guesses,
              and musicnn's own penultimate is favoured by it)
for the model and, on the same queries and candidates, for: log-mel statistics (mean and std of each of 128
mel bands over the song, each dimension z-scored over the corpus; no learning), musicnn's MSD penultimate layer
(200-d, mean over 3-s patches, z-scored; trained on the Million Song Dataset, a pretrained peer) and chance.
When tag.py also wrote musicnn_mtt_penultimate.csv, the MagnaTagATune model's penultimate and the two
penultimates joined are rows too. Productions starting with --train-only-prefix (the folk-styles renderings
add_folk.py adds) are training material only: never in a fold, a query or a candidate.
--compare NAME=VARIANT adds a variant already run in OUT as a row (each fold's own model).
--power A adds a row of the model's vectors raised to the power A element by element (sign kept), unit length again.
--dba K adds rows for the model's and musicnn MSD's vectors after database-side augmentation: each candidate's
vector plus those of its K nearest candidates (weights 1, (K-1)/K, ..., 1/K), unit length again (Gordo et al.
2017): a query-time change over the whole library, no training. --qe K does the same to the query alone
(query expansion: one more search per query, the stored vectors unchanged).
--mean-of NAME=VARIANT,VARIANT adds a row averaging several such variants' scores fold by fold (a recipe's seeds).
--train-fraction F trains each fold's model on a seeded random share F of the other folds' productions only (the
rest are held out of training too, but stay candidates): P@10 against the number of training productions, a
learning curve that says what more productions would buy.
Results: OUT/results.json and OUT/results.md. Models and stores stay in OUT/fold<k>/ for reuse (--no-train).
"""
import argparse, csv, json, os, random, shlex, subprocess, sys
import numpy as np


def load_csv_vectors(path):
    rows = list(csv.reader(open(path)))
    return {r[0]: np.array([float(x) for x in r[1:]], dtype=np.float32) for r in rows[1:]}


def logmel_stats(corpus, rows, cache_path):
    """Mean and std per mel band (128 bands, n_fft 2048, hop 512, 22,050 Hz, dB): the no-learning baseline."""
    have = {}
    if os.path.exists(cache_path):
        d = np.load(cache_path, allow_pickle=True).item()
        have = d
    missing = [r for r in rows if r["id"] not in have]
    if missing:
        import librosa
        for i, r in enumerate(missing):
            y, sr = librosa.load(os.path.join(corpus, r["file"]), sr=22050, mono=True)
            m = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128), top_db=80.0)
            have[r["id"]] = np.concatenate([m.mean(1), m.std(1)]).astype(np.float32)
            if (i + 1) % 100 == 0:
                print(f"  log-mel statistics {i + 1}/{len(missing)}", flush=True)
                np.save(cache_path, have, allow_pickle=True)
        np.save(cache_path, have, allow_pickle=True)
    return have


def zscore(m):
    return (m - m.mean(0)) / (m.std(0) + 1e-6)


def unit(m):
    return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-12)


def whiten(vecs, fit_rows, alpha):
    """Unit rows centred on the fitted rows' mean, rotated onto their principal axes and each axis scaled by
    (variance + 1e-6 * the largest) ** (-alpha / 2): alpha 1 is full whitening, 0 only centres. Fitted on
    fit_rows (a boolean mask: the fold model's training productions), applied to every row, then unit length."""
    x = vecs[fit_rows]
    mu = x.mean(0)
    lam, v = np.linalg.eigh(np.cov((x - mu).T))
    lam = np.maximum(lam, 0) + 1e-6 * lam.max()
    return unit(((vecs - mu) @ v) * lam ** (-alpha / 2))


def augment(vecs, k):
    """Database-side augmentation: each unit row plus its k nearest other rows, weighted (k - i) / k for the
    i-th (0-based), then unit length again."""
    s = vecs @ vecs.T
    np.fill_diagonal(s, -np.inf)
    nn = np.argsort(-s, axis=1)[:, :k]
    w = (k - np.arange(k, dtype=np.float32)) / k
    return unit(vecs + np.einsum("j,ijd->id", w, vecs[nn]))


def retrieval(vecs, prods, tags, queries, k=10):
    """vecs: [n, d] unit rows, or a pair (the queries' rows, the candidates' rows) where the query side differs
    (query expansion); prods: [n]; queries: indices. Returns per-query (p1, p10, tags10)."""
    qvecs, vecs = vecs if isinstance(vecs, tuple) else (vecs, vecs)
    s = qvecs[queries] @ vecs.T
    out = []
    tu = unit(tags)
    for qi, q in enumerate(queries):
        row = s[qi].copy()
        row[q] = -np.inf
        nn = np.argpartition(-row, k)[:k]
        nn = nn[np.argsort(-row[nn])]
        out.append((float(prods[nn[0]] == prods[q]), float(np.mean(prods[nn] == prods[q])), float(np.mean(tu[nn] @ tu[q]))))
    return np.array(out)


def load_jsonl(path):
    out = {}
    for line in open(path):
        s = json.loads(line)
        out[os.path.splitext(s["id"])[0]] = np.array(s["vector"], dtype=np.float32)
    return out


TRAIN_ONLY_PREFIX = "folk-styles/"


def corpus_rows(corpus, train_only_prefix=TRAIN_ONLY_PREFIX):
    """The corpus' labels.csv rows, less the training material only (productions starting with one of the
    comma-separated prefixes, e.g. datasets/debian-music/add_folk.py's): never in a fold, a query or a candidate."""
    rows = list(csv.DictReader(open(os.path.join(corpus, "labels.csv"))))
    train_only = tuple(filter(None, train_only_prefix.split(",")))
    return [r for r in rows if not (train_only and r["production"].startswith(train_only))]


def candidates(corpus, rows, skip_ids=None):
    """Candidates and queries: first renderings of previews that have tags and a musicnn vector; a track's other
    windows (build.py --segments) and second renderings are training material only, and the ids in the file
    `skip_ids` (songs soundalike cannot embed, e.g. digitally silent previews) are no candidates for any method.
    Returns the rows, their ids, productions and tag vectors, and the musicnn MSD vectors by id."""
    base = [r for r in rows if r["variant"] == "0" and r.get("segment", "0") in ("", "0")]
    tags_d = load_csv_vectors(os.path.join(corpus, "teacher_tags.csv"))
    pen_d = load_csv_vectors(os.path.join(corpus, "musicnn_penultimate.csv"))
    drop = set(open(skip_ids).read().split()) if skip_ids else set()
    base = [r for r in base if r["id"] in tags_d and r["id"] in pen_d and r["id"] not in drop]
    ids = [r["id"] for r in base]
    return base, ids, np.array([r["production"] for r in base]), np.stack([tags_d[x] for x in ids]), pen_d


def run(cmd, ok=(0,)):
    print("+", " ".join(shlex.quote(c) for c in cmd), flush=True)
    rc = subprocess.run(cmd).returncode
    if rc not in ok:
        sys.exit(f"failed ({rc}): {cmd[0]} {cmd[1]}")


def training_command(model_dir):
    """The command that trained a fold model (its metrics.json), or None where the model has none."""
    try:
        return json.load(open(os.path.join(model_dir, "metrics.json"))).get("command")
    except (OSError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("--out", default="target/lpo")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--run", default=None, help="comma-separated folds to run (default: all)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the fold assignment")
    ap.add_argument("--bin", default="target/release/soundalike")
    ap.add_argument("--cache", default=".soundalike-cache")
    ap.add_argument("--variant", default="model", help="name of this training variant (a subfolder of each fold)")
    ap.add_argument("--train-args", default="--epochs 14 --patience 4 --crops-per-song 8 --lr 2e-3 --augment --tag-weight 1.0",
                    help="arguments of each fold model's `soundalike train`; {fold} is replaced by the fold's number (e.g. a "
                         "teacher file made from that fold's earlier model, which never heard the fold)")
    ap.add_argument("--min-songs", type=int, default=5)
    ap.add_argument("--exclude-queries", default="", metavar="PROD,PROD",
                    help="productions whose songs are never queries (e.g. those an --extra model trained on), still candidates")
    ap.add_argument("--tag", default="", help="suffix of the results files (results-VARIANT[-TAG].json/.md)")
    ap.add_argument("--skip-ids", help="file of song ids (one per line) to leave out of every method, e.g. silent previews")
    ap.add_argument("--no-train", action="store_true", help="reuse the models and stores already in OUT")
    ap.add_argument("--group-column", default="production",
                    help="labels.csv column the trainer's production head and --holdout-group read (default production; "
                         "a column that is empty for training-only songs leaves them without a group)")
    ap.add_argument("--train-only-prefix", default=TRAIN_ONLY_PREFIX, metavar="PREFIX,PREFIX",
                    help="productions starting with one of these are training material only (default: the folk-styles "
                         "renderings add_folk.py adds): never dealt into a fold, queried or a candidate")
    ap.add_argument("--power", action="append", type=float, default=[], metavar="A",
                    help="also score the model's vectors raised to the power A element by element (sign kept), then unit "
                         "length: a query-time change, no training (repeatable)")
    ap.add_argument("--dba", action="append", type=int, default=[], metavar="K",
                    help="also score the model's and musicnn MSD's vectors after database-side augmentation with the K "
                         "nearest candidates (repeatable)")
    ap.add_argument("--qe", action="append", type=int, default=[], metavar="K",
                    help="also score the model's vectors with query expansion: the query's vector plus its K nearest "
                         "candidates' (weights as --dba), the candidates unchanged (repeatable)")
    ap.add_argument("--whiten", action="append", type=float, default=[], metavar="A",
                    help="also score the model's vectors whitened with the training productions' principal axes: "
                         "centred, rotated, each axis scaled by its variance to the power -A/2 (1 = full whitening), "
                         "unit length (repeatable)")
    ap.add_argument("--whiten-library", action="append", type=float, default=[], metavar="A",
                    help="also score the model's (and musicnn MSD's) vectors whitened as --whiten does, but fitted on "
                         "every candidate song, held-out productions included: a map refitted on the library being "
                         "searched, as `soundalike whiten --remove` then `whiten` on a user's own store gives (repeatable)")
    ap.add_argument("--zscore-model", action="store_true", help="also score the model's vectors z-scored per dimension (as the baselines are)")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=SONGS.jsonl",
                    help="another embedding of the whole corpus (`soundalike export --format jsonl`) scored on the same queries")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=VARIANT",
                    help="another training variant already run in OUT (its fold models' songs.jsonl) scored as a row on the same queries")
    ap.add_argument("--train-fraction", type=float, default=1.0,
                    help="share of the other folds' productions each fold model trains on (seeded per fold; default 1 = all)")
    ap.add_argument("--mean-of", action="append", default=[], metavar="NAME=VARIANT,VARIANT",
                    help="a row averaging, fold by fold, the scores of several variants already run in OUT (e.g. one "
                         "recipe's seeds): each variant's fold models are scored on the same queries, then their "
                         "P@1, P@10 and tags@10 are averaged")
    a = ap.parse_args()
    corpus = os.path.abspath(a.corpus)
    rows = corpus_rows(corpus, a.train_only_prefix)
    os.makedirs(a.out, exist_ok=True)
    prods_all = sorted({r["production"] for r in rows})
    rng = random.Random(a.seed)
    order = prods_all[:]
    rng.shuffle(order)
    folds = [sorted(order[i::a.folds]) for i in range(a.folds)]
    which = [int(x) for x in a.run.split(",")] if a.run else list(range(a.folds))

    base, ids, prods, tags, pen_d = candidates(corpus, rows, a.skip_ids)
    print(f"{len(ids)} candidate songs from {len(set(prods))} productions")
    lm = logmel_stats(corpus, base, os.path.join(a.out, "logmel_stats.npy"))
    msd = zscore(np.stack([pen_d[x] for x in ids]))
    baselines = {
        "log-mel statistics (256-d, z-scored, no learning)": unit(zscore(np.stack([lm[x] for x in ids]))),
        "musicnn MSD penultimate (200-d, z-scored, pretrained)": unit(msd),
    }
    mtt_path = os.path.join(corpus, "musicnn_mtt_penultimate.csv")
    if os.path.exists(mtt_path):
        # The MagnaTagATune model's penultimate (tag.py writes it too), alone and beside the MSD model's.
        mtt_d = load_csv_vectors(mtt_path)
        if all(x in mtt_d for x in ids):
            mtt = zscore(np.stack([mtt_d[x] for x in ids]))
            baselines["musicnn MTT penultimate (200-d, z-scored, pretrained on MagnaTagATune)"] = unit(mtt)
            baselines["musicnn MSD + MTT penultimates (400-d, z-scored)"] = unit(np.concatenate([msd, mtt], 1))
    counts = {p: int((prods == p).sum()) for p in set(prods)}
    results = {"corpus_songs": len(ids), "productions": len(set(prods)), "folds": folds, "ran": which, "seed": a.seed,
               # With --no-train the fold models come from an earlier run: their own training commands are in
               # each fold's "commands" (read from the models' metrics.json), not in --train-args.
               "train_args": None if a.no_train else a.train_args, "variant": a.variant, "per_fold": []}
    for f in which:
        excluded = set(filter(None, a.exclude_queries.split(",")))
        held = [p for p in folds[f] if counts.get(p, 0) >= a.min_songs and p not in excluded]
        queries = np.array([i for i, p in enumerate(prods) if p in held])
        fold_dir = os.path.join(a.out, f"fold{f}", a.variant)
        # --train-fraction: a seeded share of the other folds' productions trains; the rest are held out too.
        others = sorted(set(prods_all) - set(folds[f]))
        n_keep = max(1, round(a.train_fraction * len(others)))
        dropped = sorted(random.Random(f"{a.seed}-{f}-{a.train_fraction}").sample(others, len(others) - n_keep)) if n_keep < len(others) else []
        model_dir, store = os.path.join(fold_dir, "model"), os.path.join(fold_dir, "store")
        if not a.no_train:
            cmd = [a.bin, "train", os.path.join(corpus, "previews"), "--labels", os.path.join(corpus, "labels.csv"),
                   "--label-column", "genre", "--group-column", a.group_column, "--out", model_dir, "--cache", a.cache,
                   "--teacher-tags", os.path.join(corpus, "teacher_tags.csv"), "--name", f"lpo-fold{f}",
                   "--label-description", "genre: listener genre bucket of the musicnn taggers' tags (a tagger's guess, not ground truth)"]
            for p in folds[f] + dropped:
                cmd += ["--holdout-group", p]
            run(cmd + shlex.split(a.train_args.replace("{fold}", str(f))))
            # Exit 1 = some files could not be embedded (e.g. a digitally silent preview): they are listed and left out.
            # Without tags: the yardstick reads the vectors only (tags@10 uses the corpus' teacher_tags.csv).
            run([a.bin, "embed", os.path.join(corpus, "previews"), "--model", model_dir, "--out", store, "--index", "false", "--tags", "false"], ok=(0, 1))
            run([a.bin, "export", store, "--format", "jsonl", "--out", os.path.join(fold_dir, "songs.jsonl")])
        emb = load_jsonl(os.path.join(fold_dir, "songs.jsonl"))
        missing = [x for x in ids if x not in emb]
        if missing:
            # Every method must answer the same queries among the same candidates: a song the model could not
            # embed (a digitally silent preview) is left out of all of them with --skip-ids.
            sys.exit(f"{fold_dir}: the store lacks {len(missing)} songs ({', '.join(missing[:5])}); list them in --skip-ids")
        table = {f"soundalike ({a.variant})": unit(np.stack([emb[x] for x in ids]))}
        # The fold model's training songs: what statistics a shipped model could carry are fitted on.
        tr = np.array([p not in set(folds[f]) for p in prods])
        if a.zscore_model:
            # The same vectors standardised as the baselines are: each dimension z-scored over the corpus.
            table[f"soundalike ({a.variant}, z-scored over the corpus)"] = unit(zscore(np.stack([emb[x] for x in ids])))
            # ...and with statistics of the training productions only (what a model could ship with).
            m = np.stack([emb[x] for x in ids])
            mu, sd = m[tr].mean(0), m[tr].std(0) + 1e-6
            table[f"soundalike ({a.variant}, z-scored with training statistics)"] = unit((m - mu) / sd)
        # Query-time variants of the model's unit rows (a power is the same on any positive scale of a row).
        model = table[f"soundalike ({a.variant})"]
        for pw in a.power:
            table[f"soundalike ({a.variant}, each value to the power {pw:g})"] = unit(np.sign(model) * np.abs(model) ** pw)
        for al in a.whiten:
            table[f"soundalike ({a.variant}, whitened with training statistics, A={al:g})"] = whiten(model, tr, al)
        for al in a.whiten_library:
            table[f"soundalike ({a.variant}, whitened with the whole library's statistics, A={al:g})"] = whiten(model, np.ones(len(ids), bool), al)
        for k in a.dba:
            table[f"soundalike ({a.variant}, database-side augmentation, K={k})"] = augment(model, k)
        for k in a.qe:
            table[f"soundalike ({a.variant}, query expansion, K={k})"] = (augment(model, k), model)
        loaded = {}

        def vectors(variant):
            """Another variant's fold-model song vectors (unit length), read once per fold."""
            if variant not in loaded:
                e = load_jsonl(os.path.join(a.out, f"fold{f}", variant, "songs.jsonl"))
                loaded[variant] = unit(np.stack([e[x] for x in ids]))
            return loaded[variant]

        for spec in a.compare:
            name, variant = spec.split("=", 1)
            table[name] = vectors(variant)
        for spec in a.extra:
            name, path = spec.split("=", 1)
            e = load_jsonl(path)
            table[name] = unit(np.stack([e[x] for x in ids]))
        table.update(baselines)
        msd_name = next(n for n in baselines if n.startswith("musicnn MSD penultimate"))
        for al in a.whiten:
            # The peer whitened the same way (its training-production statistics), so a gain is the model's own.
            table[f"{msd_name}, whitened with training statistics, A={al:g}"] = whiten(baselines[msd_name], tr, al)
        for al in a.whiten_library:
            table[f"{msd_name}, whitened with the whole library's statistics, A={al:g}"] = whiten(baselines[msd_name], np.ones(len(ids), bool), al)
        for k in a.dba:
            table[f"{msd_name}, database-side augmentation, K={k}"] = augment(baselines[msd_name], k)
        fold_res = {"fold": f, "training_productions": len(others) - len(dropped), "held_out": held, "queries": int(len(queries)), "methods": {},
                    "commands": {name: training_command(os.path.join(a.out, f"fold{f}", variant, "model"))
                                 for name, variant in [(f"soundalike ({a.variant})", a.variant)]
                                 + [tuple(spec.split("=", 1)) for spec in a.compare]}}
        def score(v):
            r = retrieval(v, prods, tags, queries)
            per_prod = [r[prods[queries] == p][:, 1].mean() for p in held]
            return {"p1": r[:, 0].mean(), "p10": r[:, 1].mean(), "tags10": r[:, 2].mean(),
                    "p10_std_over_productions": float(np.std(per_prod))}

        scored = {name: score(v) for name, v in table.items()}
        # The model's own row first, then the seed means, then the other rows.
        first = next(iter(scored))
        fold_res["methods"][first] = scored.pop(first)
        for spec in a.mean_of:
            name, variants = spec.split("=", 1)
            runs = [score(vectors(v)) for v in variants.split(",")]
            fold_res["methods"][name] = {m: float(np.mean([r[m] for r in runs])) for m in ("p1", "p10", "tags10")}
            fold_res["commands"][name] = [training_command(os.path.join(a.out, f"fold{f}", v, "model")) for v in variants.split(",")]
        fold_res["methods"].update(scored)
        ch = [(counts[prods[q]] - 1) / (len(ids) - 1) for q in queries]
        fold_res["methods"]["chance"] = {"p1": float(np.mean(ch)), "p10": float(np.mean(ch)),
                                         "tags10": float(np.mean(unit(tags) @ unit(tags).mean(0)))}
        results["per_fold"].append(fold_res)
        print(json.dumps(fold_res, indent=1, default=float))
    names = list(results["per_fold"][0]["methods"].keys())
    summary = {}
    for n in names:
        for m in ("p1", "p10", "tags10"):
            v = [fr["methods"][n][m] for fr in results["per_fold"]]
            summary.setdefault(n, {})[m] = {"mean": float(np.mean(v)), "std_over_folds": float(np.std(v)), "folds": [float(x) for x in v]}
    results["summary"] = summary
    results["excluded_query_productions"] = a.exclude_queries
    stem = f"results-{a.variant}" + (f"-{a.tag}" if a.tag else "")
    json.dump(results, open(os.path.join(a.out, stem + ".json"), "w"), indent=1, default=float)
    md = [f"Leave-productions-out, folds {which} of {a.folds} (seed {a.seed}); {sum(fr['queries'] for fr in results['per_fold'])} queries; "
          f"{len(ids)} candidates from {len(set(prods))} productions.", "",
          "| embedding | P@1 | P@10 | tags@10 (tagger's guesses) |", "|---|---|---|---|"]
    for n in names:
        s = summary[n]
        md.append(f"| {n} | {s['p1']['mean']:.3f} | {s['p10']['mean']:.3f} ± {s['p10']['std_over_folds']:.3f} | {s['tags10']['mean']:.3f} |")
    open(os.path.join(a.out, stem + ".md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
