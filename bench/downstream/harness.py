"""Downstream benchmark: which projection method trains the best target-language NER model.

    python -m bench.downstream [--train 2000] [--test 1000] [--seeds 1,2,3] [--epochs 6]
        [--methods constrained,marker,alignment] [--modes translate-train,translate-test]
        [--work build/downstream]

On the synthetic language pair (``bench.synthetic_pair``, reference model
``transforms/models/synth-en-xx``), with the user's commands:

translate-train, per method: English training sentences with gold spans ->
``xlcorpus project --method M`` -> ``xlcorpus finetune --task ner`` -> the same small
tagger (``bench.downstream.tagger``) trained on it -> span F1 on the gold
target-language test set (``split="test"``: every sentence holds a name word that no
training sentence, of the MT model or of any tagger, contains). Baselines in the same
run: the tagger trained on the gold target side of the same training sentences (the
ceiling) and on their English side only (zero-shot through the shared subword
vocabulary, the floor). Every run tokenizes with the reference model's joint
SentencePiece model.

translate-test, per method: the target test sentences -> ``xlcorpus project --mode
translate-test`` (translated to English by the reverse model
``bench/downstream/synth-xx-en``, tagged by the English-only tagger of the same seed,
labels projected back onto the original sentence with method M) -> span F1 against
the same gold. A rejected sentence predicts no entity.

Scores: seqeval strict IOB2, exact span match, micro over the test set. Also the
intrinsic F1 of each method's projected training data against the gold target spans
of the same sentences (surface + label, as ``bench/projection.py`` scores), so the
downstream order can be read against the intrinsic one in one run.

Seeds: the data (training and test sentences) and the projections are fixed; each
seed retrains every tagger (initialisation and batch order) and so reruns
translate-test. The table gives the mean and the spread (min-max) over seeds; the
last line is ``RESULT constrained=F marker=F alignment=F gold=F source_only=F``
(translate-train mean F1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

from bench.downstream import jobs

ROOT = jobs.ROOT
FORWARD_MODEL = ROOT / "transforms" / "models" / "synth-en-xx"
REVERSE_MODEL = ROOT / "bench" / "downstream" / "synth-xx-en"
PREDICTOR = "bench.downstream.predictor:tag_source"


def intrinsic_f1(projected: dict, pairs, ids) -> dict:
    """Projected training data vs the gold target word spans of the same sentences:
    (surface, label) multisets, so a translation worded unlike the gold still counts
    the entities it got right; a rejected sentence predicts nothing."""
    from bench.downstream.scoring import word_spans

    tp = n_pred = n_gold = 0
    for rid, p in zip(ids, pairs):
        gold = Counter((p.tgt_text[s:e], lab) for s, e, lab in p.tgt_word_spans)
        n_gold += sum(gold.values())
        if rid not in projected:
            continue
        toks, tags = projected[rid]
        text = " ".join(toks)
        pred = Counter((text[s["start"]:s["end"]], s["label"]) for s in word_spans(toks, tags, text))
        n_pred += sum(pred.values())
        tp += sum((pred & gold).values())
    prec, rec = tp / n_pred if n_pred else 0.0, tp / n_gold if n_gold else 0.0
    return {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}


def evaluate_tagger(model, test_enc, test_ids, gold_tags, names) -> dict:
    from bench.downstream.scoring import span_prf
    from bench.downstream.tagger import predict_word_tags

    pred = predict_word_tags(model, test_enc)
    pred_tags = [[names[pred.get(i, {}).get(w, 0)] for w in range(len(g))] for i, g in zip(test_ids, gold_tags)]
    return span_prf(gold_tags, pred_tags)


def evaluate_translate_test(out: Path, test_ids, gold_tags, test_tokens) -> dict:
    from bench.downstream.scoring import span_prf

    rows, _, reasons = jobs.projected_tags(out)
    pred = []
    for i, g, toks in zip(test_ids, gold_tags, test_tokens):
        if i in rows:
            ptoks, ptags = rows[i]
            if ptoks != toks:  # translate-test labels the original text, so its words are the gold ones
                raise AssertionError(f"{out}: {i} has tokens {ptoks}, expected {toks}")
            pred.append(ptags)
        else:
            pred.append(["O"] * len(g))
    return {**span_prf(gold_tags, pred), "kept": len(rows), "rejected": dict(reasons)}


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0, "per_seed": values}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=2000, help="English training sentences")
    ap.add_argument("--test", type=int, default=1000, help="target-language test sentences")
    ap.add_argument("--data-seed", type=int, default=3, help="seed of the training sentences")
    ap.add_argument("--test-seed", type=int, default=7, help="seed of the test sentences (bench/projection.py's)")
    ap.add_argument("--seeds", default="1,2,3", help="tagger seeds")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--methods", default="constrained,marker,alignment")
    ap.add_argument("--modes", default="translate-train,translate-test")
    ap.add_argument("--model", type=Path, default=FORWARD_MODEL)
    ap.add_argument("--reverse-model", type=Path, default=REVERSE_MODEL)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "downstream")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch and CTranslate2 threads (on 2 shared cores, 2 torch threads ran 30x slower)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda when present)")
    args = ap.parse_args(argv)

    import torch

    from bench import synthetic_pair as sp
    from bench.downstream.tagger import Encoded, TaggerConfig, pick_device, save_tagger, train_tagger

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    spm_path = args.model / "spm.model"
    labels = list(sp.LABELS)
    names = jobs.iob2_names(labels)

    # --- inputs ------------------------------------------------------------------------
    train_pairs = sp.generate(args.train, seed=args.data_seed, split="train")
    test_pairs = sp.generate(args.test, seed=args.test_seed, split="test")
    train_ids = [f"train-{k:05d}" for k in range(len(train_pairs))]
    test_ids = [f"test-{k:05d}" for k in range(len(test_pairs))]
    src_rows = [{"id": i, **r} for i, r in zip(train_ids, sp.ner_examples(train_pairs, "src"))]
    train_en = jobs.write_ner_jsonl(src_rows, work / "input" / "train-en.jsonl")
    # translate-test input: the target text only, no labels
    test_xx = jobs.write_ner_jsonl([{"id": i, "text": p.tgt_text, "spans": []} for i, p in zip(test_ids, test_pairs)],
                                   work / "input" / "test-xx.jsonl")
    gold_test_tokens = [p.tgt_tokens for p in test_pairs]
    gold_test_tags = [p.tgt_tags for p in test_pairs]
    datasets_in = {
        "gold": jobs.save_tagged(train_ids, [p.tgt_tokens for p in train_pairs], [p.tgt_tags for p in train_pairs],
                                 names, work / "data" / "gold-xx-train"),
        "source_only": jobs.save_tagged(train_ids, [p.src_tokens for p in train_pairs],
                                        [p.src_tags for p in train_pairs], names, work / "data" / "en-train"),
    }
    test_set = jobs.save_tagged(test_ids, gold_test_tokens, gold_test_tags, names, work / "data" / "gold-xx-test")
    n_ents = sum(len(p.tgt_word_spans) for p in test_pairs)
    log(f"{len(train_pairs)} training sentences (split train, seed {args.data_seed}), {len(test_pairs)} test "
        f"sentences (split test, seed {args.test_seed}, {n_ents} entities); seeds {seeds}; "
        f"tagger device {pick_device(args.device)}")

    # --- translate-train data: project, then fine-tuning rows ----------------------------
    runs: dict[str, dict] = {}
    for name in ("gold", "source_only"):
        runs[name] = {"mode": "baseline", "project_s": 0.0, "sentences": len(train_pairs), "kept": len(train_pairs)}
    if "translate-train" in modes:
        for m in methods:
            out = work / "project" / f"train-{m}"
            secs = jobs.project(train_en, out, args.model, m, labels, threads=args.threads)
            projected, got_names, reasons = jobs.projected_tags(out)
            if got_names != names:
                raise AssertionError(f"{m}: label names {got_names}, expected {names}")
            datasets_in[m] = out
            runs[m] = {"mode": "translate-train", "project_s": round(secs, 1), "sentences": len(train_pairs),
                       "kept": len(projected), "rejected": dict(reasons),
                       "intrinsic": intrinsic_f1(projected, train_pairs, train_ids)}
            log(f"project {m}: {len(projected)}/{len(train_pairs)} kept, intrinsic F1 "
                f"{runs[m]['intrinsic']['f1']:.3f}, {secs:.1f}s; rejected {dict(reasons)}")
    encoded = {}
    for name, ds_dir in [*datasets_in.items(), ("test", test_set)]:
        out = work / "finetune" / name
        secs = jobs.finetune_ner(ds_dir, out, spm_path, threads=args.threads)
        ds, got_names = jobs.finetune_split(out)
        if got_names != names:
            raise AssertionError(f"{name}: label names {got_names}, expected {names}")
        encoded[name] = Encoded.from_dataset(ds)
        if name in runs:
            runs[name]["finetune_s"] = round(secs, 1)
            runs[name]["windows"] = len(ds)
        log(f"finetune {name}: {len(ds)} windows, {secs:.1f}s")
    test_enc = encoded.pop("test")
    import sentencepiece

    vocab = sentencepiece.SentencePieceProcessor(model_file=str(spm_path)).get_piece_size()
    cfg = TaggerConfig(vocab_size=vocab, n_labels=len(names), epochs=args.epochs)

    # --- taggers, per seed -------------------------------------------------------------
    scores: dict[str, list[dict]] = {name: [] for name in encoded}
    tt_scores: dict[str, list[dict]] = {m: [] for m in methods}
    tt_secs: dict[str, list[float]] = {m: [] for m in methods}
    for seed in seeds:
        for name, enc in encoded.items():
            model, stats = train_tagger(enc, cfg, seed, args.device)
            ev = evaluate_tagger(model, test_enc, test_ids, gold_test_tags, names)
            scores[name].append({**ev, **stats})
            log(f"seed {seed} {name}: F1 {ev['f1']:.3f} (P {ev['precision']:.3f} R {ev['recall']:.3f}), "
                f"trained {stats['windows']} windows in {stats['train_s']}s")
            if name == "source_only" and "translate-test" in modes:
                ckpt = save_tagger(model, work / f"tagger-en-seed{seed}.pt", names)
                env = {"XLCORPUS_DOWNSTREAM_TAGGER": str(ckpt), "XLCORPUS_DOWNSTREAM_SPM": str(spm_path)}
                for m in methods:
                    out = work / "project" / f"test-{m}-seed{seed}"
                    secs = jobs.project(test_xx, out, args.model, m, labels, mode="translate-test",
                                        reverse_model=args.reverse_model, predictor=PREDICTOR, env=env,
                                        threads=args.threads)
                    tev = evaluate_translate_test(out, test_ids, gold_test_tags, gold_test_tokens)
                    tt_scores[m].append(tev)
                    tt_secs[m].append(secs)
                    log(f"seed {seed} translate-test {m}: F1 {tev['f1']:.3f} (P {tev['precision']:.3f} "
                        f"R {tev['recall']:.3f}), kept {tev['kept']}/{len(test_pairs)}, {secs:.1f}s")

    # --- table ----------------------------------------------------------------------------
    table = []
    for name in [*methods, "gold", "source_only"]:
        if name not in scores:
            continue
        r, s = runs[name], scores[name]
        table.append({"method": name, "mode": r["mode"], "f1": spread([x["f1"] for x in s]),
                      "precision": statistics.fmean(x["precision"] for x in s),
                      "recall": statistics.fmean(x["recall"] for x in s),
                      "rows_kept": r["kept"], "sentences": r["sentences"], "windows": r["windows"],
                      "intrinsic_f1": r.get("intrinsic", {}).get("f1"),
                      "wall_s": round(r["project_s"] + r["finetune_s"] + statistics.fmean(x["train_s"] for x in s), 1),
                      "project_s": r["project_s"], "finetune_s": r["finetune_s"],
                      "train_s": statistics.fmean(x["train_s"] for x in s), "rejected": r.get("rejected", {})})
    for m in methods:
        if not tt_scores[m]:
            continue
        s = tt_scores[m]
        table.append({"method": m, "mode": "translate-test", "f1": spread([x["f1"] for x in s]),
                      "precision": statistics.fmean(x["precision"] for x in s),
                      "recall": statistics.fmean(x["recall"] for x in s),
                      "rows_kept": round(statistics.fmean(x["kept"] for x in s), 1), "sentences": len(test_pairs),
                      "windows": None, "intrinsic_f1": None, "wall_s": round(statistics.fmean(tt_secs[m]), 1),
                      "rejected": s[0]["rejected"]})
    # the ratio to the tagger trained on gold target data: how much of the ceiling a method reaches
    gold_f1 = next((row["f1"]["mean"] for row in table if row["method"] == "gold"), None)
    lines = [f"| method | mode | F1 mean | F1 min-max (seeds {args.seeds}) | F1 / gold | P | R | rows kept | "
             f"intrinsic F1 | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        f = row["f1"]
        row["f1_vs_gold"] = f["mean"] / gold_f1 if gold_f1 else None
        intr = f"{row['intrinsic_f1']:.3f}" if row["intrinsic_f1"] is not None else "-"
        ratio = f"{row['f1_vs_gold']:.3f}" if row["f1_vs_gold"] is not None else "-"
        lines.append(f"| {row['method']} | {row['mode']} | {f['mean']:.3f} | {f['min']:.3f}-{f['max']:.3f} | "
                     f"{ratio} | {row['precision']:.3f} | {row['recall']:.3f} | {row['rows_kept']}/{row['sentences']} | "
                     f"{intr} | {row['wall_s']} |")
    mean = {row["method"]: row["f1"]["mean"] for row in table if row["mode"] != "translate-test"}
    tt_mean = {row["method"]: row["f1"]["mean"] for row in table if row["mode"] == "translate-test"}
    intrinsic = {m: runs[m]["intrinsic"]["f1"] for m in methods if m in runs and "intrinsic" in runs[m]}
    order = lambda d: " > ".join(sorted(d, key=d.get, reverse=True))
    notes = []
    if len(intrinsic) == len(methods) and all(m in mean for m in methods):
        down = {m: mean[m] for m in methods}
        notes.append(f"translate-train order: {order(down)}; intrinsic projection F1 order: {order(intrinsic)}; "
                     f"same order: {order(down) == order(intrinsic)}")
    if len(tt_mean) == len(methods):
        notes.append(f"translate-test order: {order(tt_mean)}")
    total = time.perf_counter() - t_start
    report = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "tagger": {k: v for k, v in cfg.__dict__.items()}, "runs": runs, "table": table,
              "translate_test": tt_scores, "per_seed": scores, "notes": notes, "total_s": round(total, 1),
              "torch": torch.__version__}
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (work / "report.md").write_text("\n".join(lines + [""] + notes) + "\n")
    print("\n".join(lines))
    for n in notes:
        print(n)
    print(f"total {total:.0f}s; report {work / 'report.json'}")
    if tt_mean:
        print("translate-test F1: " + " ".join(f"{m}={tt_mean[m]:.4f}" for m in methods if m in tt_mean))
    keys = [*methods, "gold", "source_only"]
    print("RESULT " + " ".join(f"{k}={mean[k]:.4f}" for k in keys if k in mean))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
