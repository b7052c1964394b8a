"""Benchmark: the fine-tuning stage's tokenization paths against raw SentencePiece encode.

    python bench/tokenize.py [--lines 60000] [--seq-len 512] [--batch 4096]

On the same generated lines (word salads per language from the demo sample, 6-40 words) and a
tokenizer trained on them by ``train_tokenizer``, prints lines/s of:
- raw ``sp.encode(lines)`` (one call per batch);
- the packing path, the stage path for causal-LM fine-tuning: ``sp.encode`` per
  batch, then ``pack_by_language`` into seq_len sequences; ratio over raw (target >= 0.7);
- the NER path: words = ``line.split()``, ``align_ner`` with max_length=128 (it
  encodes every word in one call, so its raw reference is ``sp.encode`` of those words);
- packing efficiency, non-pad / all tokens (target >= 0.98).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# This file is named like the standard library's ``tokenize``; running it puts bench/
# first on sys.path, where it would shadow the real one for linecache, inspect, etc.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]



def _demo_vocabulary() -> dict[str, list[str]]:
    # bench/ is off sys.path (see above): load the shared generator from its file
    import importlib.util

    spec = importlib.util.spec_from_file_location("corpus_gen", Path(__file__).resolve().parent / "corpus_gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.demo_vocabulary()


def make_lines(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n word-salad lines (6-40 words) and their languages, from the demo sample's words."""
    import random

    by_lang = _demo_vocabulary()
    rng = random.Random(seed)
    langs = sorted(by_lang)
    out_langs = [langs[i % len(langs)] for i in range(n)]
    lines = [" ".join(rng.choice(by_lang[l]) for _ in range(rng.randint(6, 40))) for l in out_langs]
    return lines, out_langs


def best_of(fn, repeat: int) -> float:
    """Fastest of ``repeat`` runs, in seconds (the machine is shared)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=60_000)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import sentencepiece as spm

    from xlcorpus.transforms.finetune import align_ner, pack_by_language, packing_efficiency, train_tokenizer

    lines, langs = make_lines(args.lines)
    with tempfile.TemporaryDirectory() as tmp:
        model = train_tokenizer(lines, f"{tmp}/tok", vocab_size=8000, sample_lines=20_000, hard_vocab_limit=False)
        sp = spm.SentencePieceProcessor(model_file=model)
    batches = [(lines[i:i + args.batch], langs[i:i + args.batch]) for i in range(0, len(lines), args.batch)]
    sep, pad, cls = sp.eos_id(), sp.pad_id() if sp.pad_id() >= 0 else 0, sp.bos_id()
    print(f"{len(lines)} lines, {len(set(langs))} languages, vocab {sp.vocab_size()}, batch {args.batch}")

    def raw():
        for b, _ in batches:
            sp.encode(b)

    packed = {}

    def packing():
        by_lang = defaultdict(list)
        for b, ls in batches:
            for lang, ids in zip(ls, sp.encode(b)):
                by_lang[lang].append(ids)
        packed.update(pack_by_language(by_lang, args.seq_len, sep, pad))

    word_batches = [[l.split() for l in b] for b, _ in batches]
    label_batches = [[[0] * len(ws) for ws in wb] for wb in word_batches]

    def raw_words():
        for wb in word_batches:
            sp.encode([w for ws in wb for w in ws])

    def ner():
        for wb, lb in zip(word_batches, label_batches):
            align_ner(wb, lb, sp, max_length=128, stride=16, cls_id=cls, sep_id=sep)

    raw()  # warm-up
    t_raw, t_pack = best_of(raw, args.repeat), best_of(packing, args.repeat)
    t_raw_words, t_ner = best_of(raw_words, args.repeat), best_of(ner, args.repeat)
    n = len(lines)
    tokens = sum(int(p.attention_mask.sum()) for p in packed.values())
    slots = sum(p.attention_mask.size for p in packed.values())
    print(f"raw sp.encode(lines):            {n / t_raw:12,.0f} lines/s")
    print(f"packing path (encode + pack):    {n / t_pack:12,.0f} lines/s   ratio {t_raw / t_pack:.2f} (target >= 0.7)")
    print(f"raw sp.encode(words of lines):   {n / t_raw_words:12,.0f} lines/s")
    print(f"NER path (align_ner, len 128):   {n / t_ner:12,.0f} lines/s   ratio {t_raw_words / t_ner:.2f} "
          f"vs raw words, {t_raw / t_ner:.2f} vs raw lines")
    print(f"packing efficiency (seq_len {args.seq_len}, per language): {tokens / slots:.4f} (target >= 0.98); "
          + ", ".join(f"{l}={packing_efficiency(p):.4f}" for l, p in packed.items()))


if __name__ == "__main__":
    main()
