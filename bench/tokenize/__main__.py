"""Benchmark: the fine-tuning stage's tokenization paths against raw SentencePiece encode.

    python bench/tokenize [--lines 60000] [--seq-len 512] [--batch 4096]

(a folder, not ``bench/tokenize.py``: a file of that name would shadow the standard
library's ``tokenize`` for every other script run from bench/)

On the same generated lines (word salads per language from the demo sample, 6-40 words) and a
tokenizer trained on them by ``train_tokenizer``, prints lines/s of:
- raw ``sp.encode(lines)`` (one call per batch);
- the LM stage as a worker runs it: ``PackSequences`` in its bundle DoFn (``PackBundleFn``)
  over Arrow batches (encode, fertility counts, per-language packing, output rows) and
  ``PackSequences.pack_tails`` on the leftovers; ratio over raw (target >= 0.8), with a
  check that the packed sequences hold exactly raw encode's pieces plus one separator
  between documents;
- the NER path: words = ``line.split()``, ``align_ner`` with max_length=128 (it
  encodes every word in one call, so its raw reference is ``sp.encode`` of those words);
- packing efficiency, non-pad / all tokens (target >= 0.98).

Last line: ``RESULT ratio=R packing=P`` (LM stage over raw encode, packing efficiency).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _demo_vocabulary() -> dict[str, list[str]]:
    # bench/ is not on sys.path when this folder runs: load the shared generator from its file
    import importlib.util

    spec = importlib.util.spec_from_file_location("corpus_gen", Path(__file__).resolve().parents[1] / "corpus_gen.py")
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


def paired(a, b, repeat: int, cpu: dict | None = None) -> tuple[float, float]:
    """Fastest of ``repeat`` runs of each, alternating a and b, so a load spike from other
    work on the machine hits both sides of the ratio alike. ``cpu`` (if given) gets the
    least CPU time (all threads) of each, which other work on the machine barely moves."""
    ta, tb, ca, cb = [], [], [], []
    for _ in range(repeat):
        for fn, wall, used in ((a, ta, ca), (b, tb, cb)):
            c = time.process_time()
            wall.append(best_of(fn, 1))
            used.append(time.process_time() - c)
    if cpu is not None:
        cpu.update(a=min(ca), b=min(cb))
    return min(ta), min(tb)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=60_000)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import numpy as np
    import sentencepiece as spm

    from xlcorpus.transforms.stages.finetune.ner import align_ner
    from xlcorpus.transforms.stages.finetune.tokenizer import train_tokenizer

    lines, langs = make_lines(args.lines)
    with tempfile.TemporaryDirectory() as tmp:
        model = train_tokenizer(lines, f"{tmp}/tok", vocab_size=8000, sample_lines=20_000, hard_vocab_limit=False)
        sp = spm.SentencePieceProcessor(model_file=model)
        model_path = Path(tmp).parent / "xlcorpus-bench-tok.model"  # the stage loads the model by path
        model_path.write_bytes(Path(model).read_bytes())
        model_path = str(model_path)
    batches = [(lines[i:i + args.batch], langs[i:i + args.batch]) for i in range(0, len(lines), args.batch)]
    sep, cls = sp.eos_id(), sp.bos_id()
    print(f"{len(lines)} lines, {len(set(langs))} languages, vocab {sp.vocab_size()}, batch {args.batch}")

    def raw():
        for b, _ in batches:
            sp.encode(b)

    # The stage itself: its bundle DoFn on Arrow batches (as the job's reader makes them),
    # then its tails step on the bundle's leftovers, exactly as a worker runs them.
    import pyarrow as pa

    from xlcorpus.transforms.stages.finetune.options import FinetuneOptions
    from xlcorpus.transforms.stages.finetune.passes import TAILS, PackBundleFn
    from xlcorpus.transforms.stages.finetune.stage import PackSequences

    def arrow(i, b, ls):
        n = len(b)
        return pa.RecordBatch.from_pydict({
            "id": [f"r{i}-{k}" for k in range(n)], "text": b, "source": ["bench"] * n,
            "line": list(range(1, n + 1)), "offset": list(range(n)), "meta": [None] * n, "lang": ls,
            "split": ["train"] * n})

    arrow_batches = [arrow(i, b, ls) for i, (b, ls) in enumerate(batches)]
    stage = PackSequences(FinetuneOptions(task="lm", seq_len=args.seq_len), tokenizer=model_path)
    fn = PackBundleFn(stage)
    fn.setup()
    made: list[pa.RecordBatch] = []

    def packing():
        fn.start_bundle()
        out = []
        for b in arrow_batches:
            out.extend(x for x in fn.process(b) if isinstance(x, pa.RecordBatch))
        tails = {}
        for item in fn.finish_bundle():
            if item.tag == TAILS:
                (key, tail) = item.value.value
                tails.setdefault(key, []).append(tail)
        for key, ts in tails.items():
            kept = stage.pack_tails((key, ts)).kept
            if kept is not None:
                out.append(kept)
        made[:] = out

    word_batches = [[l.split() for l in b] for b, _ in batches]
    label_batches = [[[0] * len(ws) for ws in wb] for wb in word_batches]

    def raw_words():
        for wb in word_batches:
            sp.encode([w for ws in wb for w in ws])

    def ner():
        for wb, lb in zip(word_batches, label_batches):
            align_ner(wb, lb, sp, max_length=128, stride=16, cls_id=cls, sep_id=sep)

    raw()  # warm-up
    cpu: dict = {}
    t_raw, t_pack = paired(raw, packing, args.repeat, cpu)
    t_raw_words, t_ner = paired(raw_words, ner, args.repeat)
    n = len(lines)
    # packing efficiency of the last timed run's sequences (not timed: analysis, not the stage)
    packed = {}
    for b in made:
        masks = packed.setdefault(b.column("lang")[0].as_py(), [])
        masks.append(np.asarray(b.column("attention_mask").values).reshape(b.num_rows, -1))
    packed = {lang: np.concatenate(ms) for lang, ms in packed.items()}
    tokens = sum(int(m.sum()) for m in packed.values())
    slots = sum(m.size for m in packed.values())
    print(f"raw sp.encode(lines):            {n / t_raw:12,.0f} lines/s")
    print(f"LM stage (PackSequences+tails): {n / t_pack:13,.0f} lines/s   ratio {t_raw / t_pack:.2f} (target >= 0.8)")
    print(f"  CPU time (all threads): raw {cpu['a']:.2f} s, LM stage {cpu['b']:.2f} s, ratio {cpu['a'] / cpu['b']:.2f}")
    print(f"raw sp.encode(words of lines):   {n / t_raw_words:12,.0f} lines/s")
    print(f"NER path (align_ner, len 128):   {n / t_ner:12,.0f} lines/s   ratio {t_raw_words / t_ner:.2f} "
          f"vs raw words, {t_raw / t_ner:.2f} vs raw lines")
    print(f"packing efficiency (seq_len {args.seq_len}, per language): {tokens / slots:.4f} (target >= 0.98); "
          + ", ".join(f"{l}={m.sum() / m.size:.4f}" for l, m in sorted(packed.items())))
    # the stage packed exactly what raw encode makes: every piece plus one separator per document boundary
    pieces: dict[str, list[int]] = {}
    for (b, ls) in batches:
        for ids, lang in zip(sp.encode(b), ls):
            if ids:
                pieces.setdefault(lang, []).append(len(ids))
    expected = {lang: sum(v) + len(v) - 1 for lang, v in pieces.items()}
    got = {lang: int(m.sum()) for lang, m in packed.items()}
    if got != expected:
        raise SystemExit(f"packed tokens differ from raw encode: {got} != {expected}")
    print(f"RESULT ratio={t_raw / t_pack:.2f} packing={tokens / slots:.4f}")


if __name__ == "__main__":
    main()
