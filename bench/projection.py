"""Projection benchmark on held-out synthetic sentences with the reference model.

    python bench/projection.py [--n 1000] [--model transforms/models/synth-en-xx] [--seed 7]

Per method (constrained, marker, alignment): span F1 (exact match against the gold
target word spans ``tgt_word_spans``, glued case suffix included, because every method
places spans at word boundaries; a rejected sentence predicts nothing), F1 on the kept
sentences, strict F1 (unwidened spans against the suffix-less ``tgt_spans``; word-level
methods can only reach it for entities without a suffix),
retention, sentences/s (and its ratio to the raw CTranslate2 translate_batch of the
same sentences), model calls and sequences per sentence. For constrained, the pruned
search is compared with exhaustive scoring: scored placements, sequences through the
model, and agreement of the answers.

The speed ratio (constrained sentences/s over raw translate_batch sentences/s, same
sentences, same translator) comes from ``--repeats`` runs of each taken in turns, the
fastest of each, so that a shared machine's load hits both alike; the CPU-time ratio
is printed beside it. One CTranslate2 thread by default (``--threads``): a Beam job runs
one worker per core. ``--device cuda [--compute-type float16]`` runs it on a GPU
(``bench/projection_gpu.sh``). Last line:

    RESULT constrained_f1=F marker_f1=F alignment_f1=F speed_ratio=R agreement=A
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py would shadow the standard library's tokenize (imported by pandas via
# Beam): drop this script's folder from the import path first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.synthetic_pair` from any directory

import argparse
import json
import os
import time
from collections import Counter

ROOT = Path(__file__).resolve().parents[1]


def span_set(text: str, spans) -> Counter:
    """Spans as (surface string, label): comparable across translations of different
    wording, identical to offset matching when the translation is the gold text."""
    return Counter((text[s["start"]:s["end"]], s["label"]) for s in spans)


def f1(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def evaluate(results, pairs, word_span) -> dict:
    tp = n_pred = n_gold = 0
    tp_k = pred_k = gold_k = 0
    tp_s = pred_s = gold_s = 0  # strict: raw predicted spans against the suffix-less tgt_spans
    kept = 0
    reasons: Counter = Counter()
    for res, pair in zip(results, pairs):
        gold = Counter((pair.tgt_text[s:e], lab) for s, e, lab in pair.tgt_word_spans)
        n_gold += sum(gold.values())
        gold_s += len(pair.tgt_spans)
        if res.reason is not None:
            reasons[res.reason] += 1
            continue
        kept += 1
        widened = []
        for s in res.spans:  # methods that place spans inside words are scored on whole words
            a, b = word_span(res.text, s["start"], s["end"])
            widened.append({"start": a, "end": b, "label": s["label"]})
        pred = span_set(res.text, widened)
        strict = span_set(res.text, res.spans)
        tp_s += sum((strict & Counter((pair.tgt_text[s:e], lab) for s, e, lab in pair.tgt_spans)).values())
        pred_s += sum(strict.values())
        hit = sum((pred & gold).values())
        tp += hit
        n_pred += sum(pred.values())
        tp_k += hit
        pred_k += sum(pred.values())
        gold_k += sum(gold.values())
    p, r, f = f1(tp, n_pred, n_gold)
    return {"precision": p, "recall": r, "f1": f, "f1_kept": f1(tp_k, pred_k, gold_k)[2],
            "f1_strict": f1(tp_s, pred_s, gold_s)[2],
            "retention": kept / len(pairs), "rejected": dict(reasons.most_common())}


def project_all(proj, texts, spans, batch):
    res = []
    for k in range(0, len(texts), batch):
        res.extend(proj.project(texts[k:k + batch], spans[k:k + batch]))
    return res


def timed(fn):
    """(result, wall seconds, CPU seconds of this process, all its threads)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default=str(ROOT / "transforms" / "models" / "synth-en-xx"))
    ap.add_argument("--convention", default=None, help="default: from the model's languages.json, else marian")
    ap.add_argument("--source-eos", action="store_true", help="append </s> to the source (the reference model: no)")
    ap.add_argument("--src-lang", default=None)
    ap.add_argument("--tgt-lang", default=None)
    ap.add_argument("--beam-size", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=96, help="max_decoding_length (pieces)")
    ap.add_argument("--batch", type=int, default=1024,
                    help="sentences per projection call (the NER reader's Beam batch: 1024 rows)")
    # one thread per model by default: Beam runs one worker per core, so a worker's per-core
    # speed is what a job gets (--threads 2 lets raw translation's large batches use both cores)
    ap.add_argument("--threads", type=int, default=1, help="CTranslate2 intra_threads (threads per batch)")
    ap.add_argument("--inter-threads", type=int, default=1, help="CTranslate2 inter_threads (batches side by side)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (CTranslate2 device)")
    ap.add_argument("--compute-type", default="default", help="CTranslate2 compute type (int8, float16, ...)")
    ap.add_argument("--max-batch-tokens", type=int, default=4096, help="translation batch (tokens)")
    ap.add_argument("--batch-tokens", type=int, default=None,
                    help="constrained: tokens per scoring batch (default: 512 on CPU, --max-batch-tokens on GPU)")
    ap.add_argument("--bounds", default="logits", choices=["logits", "scores"], help="constrained search bounds")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed runs of raw translation and constrained, interleaved; the fastest of each counts")
    ap.add_argument("--methods", default="constrained,marker,alignment")
    ap.add_argument("--no-exhaustive", action="store_true")
    ap.add_argument("--score-chunk", type=int, default=1, help="constrained: placements scored per request")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # before CTranslate2 loads

    from bench import synthetic_pair as sp
    from xlcorpus.transforms.backends.mt import MTBackend, MTOptions
    from xlcorpus.transforms.stages.project.options import ProjectionOptions
    from xlcorpus.transforms.stages.project.projector import Projector

    meta_path = Path(args.model) / "languages.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    conv = args.convention or meta.get("convention", "marian")
    src_lang = args.src_lang or meta.get("src_lang", None if conv == "marian" else sp.SRC_LANG)
    tgt_lang = args.tgt_lang or meta.get("tgt_lang", None if conv == "marian" else sp.TGT_LANG)
    opts = MTOptions(args.model, conv, src_lang, tgt_lang, beam_size=args.beam_size, intra_threads=args.threads,
                     inter_threads=args.inter_threads,
                     max_decoding_length=args.max_len, source_eos=args.source_eos or meta.get("source_eos", False),
                     device=args.device, compute_type=args.compute_type, max_batch_tokens=args.max_batch_tokens)
    fw = MTBackend(opts)
    pairs = sp.generate(args.n, seed=args.seed, split=args.split)
    texts = [p.src_text for p in pairs]
    spans = [[{"start": s, "end": e, "label": lab} for s, e, lab in p.src_spans] for p in pairs]
    n_ents = sum(len(s) for s in spans)
    print(f"{len(pairs)} held-out sentences ({args.split}, seed {args.seed}), {n_ents} entities; model {args.model} "
          f"({conv}, {src_lang}->{tgt_lang}, beam {args.beam_size}, {args.threads} x {args.inter_threads} threads, "
          f"{fw.translator.device} {fw.translator.compute_type})", flush=True)

    def projector(method, exhaustive=False):
        extra = {} if args.batch_tokens is None else {"batch_tokens": args.batch_tokens}
        return Projector(ProjectionOptions(method=method, labels=sp.LABELS, exhaustive=exhaustive,
                                           beam_size=args.beam_size, score_chunk=args.score_chunk,
                                           bounds=args.bounds, **extra), fw)

    # the raw library on the same input: plain translation, nothing projected (after a warm-up)
    sources = [fw.source_tokens(t) for t in texts]

    def raw_translate():
        return fw.translator.translate_batch(
            sources, target_prefix=[fw.target_prefix] * len(texts) if fw.target_prefix else None,
            beam_size=args.beam_size, max_batch_size=opts.max_batch_tokens, batch_type="tokens",
            max_decoding_length=args.max_len)

    fw.translator.translate_batch(sources[:32], beam_size=args.beam_size)
    project_all(projector("constrained"), texts[:32], spans[:32], args.batch)  # warm-up
    # raw and constrained timed in turns, so both see the same machine load; fastest run of each
    raw_runs, con_runs = [], []
    constrained = projector("constrained")
    con_res = con_calls = con_seqs = None
    for _ in range(max(1, args.repeats)):
        raw, w, c = timed(raw_translate)
        raw_runs.append((w, c))
        fw.counters.calls = fw.counters.sequences = 0
        con_res, w, c = timed(lambda: project_all(constrained, texts, spans, args.batch))
        con_runs.append((w, c))
        con_calls, con_seqs = fw.counters.calls, fw.counters.sequences
    raw_s, raw_cpu = min(w for w, _ in raw_runs), min(c for _, c in raw_runs)
    con_s, con_cpu = min(w for w, _ in con_runs), min(c for _, c in con_runs)
    raw_rate = len(texts) / raw_s
    exact = sum(fw.decode(r.hypotheses[0][len(fw.target_prefix):]) == p.tgt_text for r, p in zip(raw, pairs))
    print(f"raw ctranslate2 translate_batch: {raw_rate:.1f} sentences/s (fastest of {len(raw_runs)}; CPU "
          f"{raw_cpu:.2f}s); translation == gold for {exact / len(pairs):.1%}", flush=True)

    rows, out = [], {"n": len(pairs), "entities": n_ents, "raw_sentences_per_s": raw_rate,
                     "device": fw.translator.device, "compute_type": fw.translator.compute_type}
    results_by = {}
    variants = [(m, False) for m in args.methods.split(",")]
    if "constrained" in args.methods and not args.no_exhaustive:
        variants.append(("constrained", True))
    for method, exhaustive in variants:
        if method == "constrained" and not exhaustive:
            res, secs, calls, seqs = con_res, con_s, con_calls, con_seqs
        else:
            proj = projector(method, exhaustive)
            fw.counters.calls = fw.counters.sequences = 0
            res, secs, _cpu = timed(lambda: project_all(proj, texts, spans, args.batch))
            calls, seqs = fw.counters.calls, fw.counters.sequences
        name = method + (" (exhaustive)" if exhaustive else "")
        results_by[name] = res
        ev = evaluate(res, pairs, sp.word_span)
        row = {"method": name, **ev, "sentences_per_s": len(pairs) / secs, "vs_raw": len(pairs) / secs / raw_rate,
               "calls_per_sentence": calls / len(pairs), "sequences_per_sentence": seqs / len(pairs),
               "scored_per_entity": sum(r.scored for r in res) / max(n_ents, 1)}
        rows.append(row)
        print(f"  {name:<26} F1 {ev['f1']:.3f} (kept {ev['f1_kept']:.3f}, strict {ev['f1_strict']:.3f})  "
              f"retention {ev['retention']:.1%}  {row['sentences_per_s']:.1f} sent/s ({row['vs_raw']:.2f}x raw)  "
              f"calls/sent {row['calls_per_sentence']:.2f}  seqs/sent {row['sequences_per_sentence']:.1f}  "
              f"rejected {ev['rejected']}", flush=True)
    out["methods"] = rows
    speed_ratio = raw_s / con_s
    out["constrained_speed"] = {"sentences_per_s": len(texts) / con_s, "raw_sentences_per_s": raw_rate,
                                "speed_ratio": speed_ratio, "cpu_ratio": raw_cpu / con_cpu,
                                "calls_per_sentence": con_calls / len(texts),
                                "sequences_per_sentence": con_seqs / len(texts),
                                "bounds": args.bounds, "repeats": len(con_runs)}
    print(f"constrained vs raw translate_batch: {len(texts) / con_s:.1f} vs {raw_rate:.1f} sentences/s = "
          f"{speed_ratio:.3f}x (CPU time {raw_cpu / con_cpu:.3f}x); model calls/sentence {con_calls / len(texts):.2f}, "
          f"sequences/sentence {con_seqs / len(texts):.2f} (translation included); bounds {args.bounds}")
    agree = None
    if "constrained" in results_by and "constrained (exhaustive)" in results_by:
        a, b = results_by["constrained"], results_by["constrained (exhaustive)"]
        agree = sum((x.reason, x.spans) == (y.reason, y.spans) for x, y in zip(a, b)) / len(a)
        sa, sb = sum(x.scored for x in a), sum(x.scored for x in b)
        qa, qb = sum(x.sequences for x in a), sum(x.sequences for x in b)
        out["constrained_vs_exhaustive"] = {"agreement": agree, "scored": [sa, sb], "scored_ratio": sa / max(sb, 1),
                                            "sequences": [qa, qb], "sequences_ratio": qa / max(qb, 1)}
        print(f"constrained vs exhaustive: same answers on {agree:.1%} of sentences; scored placements "
              f"{sa} vs {sb} ({sa / max(sb, 1):.3f}x); sequences through the model {qa} vs {qb} "
              f"({qa / max(qb, 1):.3f}x)")
    f = {r["method"]: r["f1"] for r in rows}
    if {"constrained", "marker", "alignment"} <= set(f):
        print(f"goal constrained F1 > marker F1 > alignment F1: "
              f"{f['constrained'] > f['marker'] > f['alignment']}")
    print(f"goal speed ratio >= 0.5: {speed_ratio >= 0.5}; goal agreement 100%: {agree == 1.0}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    fmt = lambda x: "nan" if x is None else f"{x:.4f}"  # noqa: E731
    print(f"RESULT constrained_f1={fmt(f.get('constrained'))} marker_f1={fmt(f.get('marker'))} "
          f"alignment_f1={fmt(f.get('alignment'))} speed_ratio={speed_ratio:.4f} "
          f"agreement={'nan' if agree is None else f'{100 * agree:.1f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
