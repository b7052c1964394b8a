"""Recipe of the translate-test reverse model ``bench/downstream/synth-xx-en`` (xx -> en).

    python bench/downstream/train_reverse_mt.py [--minutes 12] [--pairs 100000] [--seed 2]

It is ``bench/train_reference_mt.py`` (same data generator, SentencePiece, Transformer,
CTranslate2 conversion and parity check) run on the generated pairs with source and
target swapped and no marked copies: translate-test only needs a plain translation
into the source language; the labels are projected back with the forward model
``synth-en-xx``. The recipe's own evaluation is written for en -> xx, so this script
evaluates the reverse direction itself (exact match and word accuracy against the
English side of held-out ``split="test"`` pairs) and writes its own model card.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# bench/tokenize.py would shadow the standard library's tokenize: keep bench/ off the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() not in (ROOT / "bench", ROOT / "bench" / "downstream")]
sys.path.insert(0, str(ROOT))

import argparse
import json
import time

DEFAULT_OUT = ROOT / "bench" / "downstream" / "synth-xx-en"

CARD = """# synth-xx-en: reverse model for translate-test

Translates the synthetic target language (`xx`) back into the synthetic English-like
source (`en`) of `bench.synthetic_pair`. Used by `python -m bench.downstream` in translate-test
mode (`xlcorpus project --mode translate-test --reverse-model ...`): the target test
sentence is translated to English, tagged there, and the labels are projected back
onto the original sentence with the forward model `transforms/models/synth-en-xx`.

## Recipe
```
{recipe}
```
`bench/train_reference_mt.py`'s model, data and conversion with the pairs swapped and
no marked copies. {steps} steps, {seen} pair views in {train_s} s (final smoothed
loss {loss}); parameters {params:,}; model.bin {size_mb:.2f} MB; torch vs CTranslate2
float32 max |dlogp| {parity:.1e}.

## Evaluation (held-out, xx -> en)
{n} pairs of `split="test"` (seed {eval_seed}); every sentence holds a name word never
seen in training. Exact match is low by construction, not by accident: the target has
no articles (`a` / `the` cannot be told apart), one locative case for `in` and `at`,
and a many-to-one respelling of names (`ph` and `f` both become `f`, `c` / `k` / `q`
become `k`), so the English side cannot be recovered word for word. Word order,
entities and their boundaries are what translate-test needs, and what the tagger sees.

| metric | value |
|---|---|
| exact match, beam 4 | {em} |
| word accuracy (position-wise), beam 4 | {wacc} |
| same number of words as the reference | {same_len} |

## Licence
Apache-2.0, like the project.
"""


def evaluate_reverse(model_dir: Path, n: int, seed: int, threads: int) -> dict:
    import ctranslate2
    import sentencepiece as spm

    from bench import synthetic_pair as syn

    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "spm.model"))
    tr = ctranslate2.Translator(str(model_dir), device="cpu", compute_type="int8", intra_threads=threads)
    pairs = syn.generate(n, seed, "test")
    out = tr.translate_batch([sp.encode(p.tgt_text, out_type=str) for p in pairs], beam_size=4,
                             max_batch_size=256, max_decoding_length=160)
    hyps = [sp.decode(o.hypotheses[0]) for o in out]
    ref_words = sum(len(p.src_text.split()) for p in pairs)
    return {"held_out_pairs": n, "split": "test", "seed": seed,
            "exact_match_beam4": round(sum(h == p.src_text for h, p in zip(hyps, pairs)) / n, 4),
            "word_accuracy_beam4": round(sum(sum(a == b for a, b in zip(h.split(), p.src_text.split()))
                                             for h, p in zip(hyps, pairs)) / ref_words, 4),
            "same_length_rate": round(sum(len(h.split()) == len(p.src_text.split())
                                          for h, p in zip(hyps, pairs)) / n, 4),
            "examples": [{"src": p.tgt_text, "ref": p.src_text, "hyp": h} for p, h in list(zip(pairs, hyps))[:5]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "synth-xx-en-work")
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--pairs", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval", type=int, default=1000)
    ap.add_argument("--eval-seed", type=int, default=7)
    ap.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md from --out's eval.json")
    args = ap.parse_args(argv)
    if args.card_only:
        write_card(args.out, json.loads((args.out / "eval.json").read_text()))
        return 0

    from bench import train_reference_mt as recipe

    forward_examples = recipe.make_examples

    def reversed_examples(*a, **k):
        return [(t, s) for s, t in forward_examples(*a, **k)]

    recipe.make_examples = reversed_examples  # the one change: train on (target, source)
    t0 = time.monotonic()
    recipe.main(["--out", str(args.out), "--work", str(args.work), "--minutes", str(args.minutes),
                 "--pairs", str(args.pairs), "--seed", str(args.seed), "--threads", str(args.threads),
                 "--marked", "0", "--marked-all", "0", "--eval", "0"])
    report = json.loads((args.out / "eval.json").read_text())
    report["recipe"] = " ".join(["python", "bench/downstream/train_reverse_mt.py",
                                 "--minutes", str(args.minutes), "--pairs", str(args.pairs), "--seed", str(args.seed)])
    report["direction"] = "xx -> en"
    report["eval"] = evaluate_reverse(args.out, args.eval, args.eval_seed, 2)
    report["total_seconds"] = round(time.monotonic() - t0, 1)
    (args.out / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_card(args.out, report)
    print(json.dumps({k: v for k, v in report["eval"].items() if k != "examples"}))
    return 0


def write_card(out: Path, report: dict) -> None:
    tr, ev = report["training"], report["eval"]
    (out / "MODEL_CARD.md").write_text(CARD.format(
        recipe=report["recipe"], steps=tr["steps"], seen=tr["pairs_seen"], train_s=tr["train_seconds"],
        loss=tr["final_loss"], params=report["parameters"], size_mb=report["model_bin_bytes"] / 1e6,
        parity=report["torch_ct2_float32_max_abs_logprob_diff"], n=ev["held_out_pairs"], eval_seed=ev["seed"],
        em=ev["exact_match_beam4"], wacc=ev["word_accuracy_beam4"], same_len=ev["same_length_rate"]))


if __name__ == "__main__":
    sys.exit(main())
