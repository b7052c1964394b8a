"""Benchmark: lexical-filter scoring against brute-force rapidfuzz, in one run.

    taskset -c 0 python -P bench/lexfilter.py [--lexicon-words 50000] [--batch 4096]
        [--cold-batches 3] [--stream-sentences 100000] [--brute-sample 800] [--seed 0]
        [--modes exact,distance=0.5,edits=1,edits=2] [--max-deletes 3] [--before-deletes 1]

(``-P``: keeps ``bench/`` off ``sys.path``, where ``bench/tokenize.py`` would shadow the
standard library's ``tokenize``.)

Data (deterministic, generated here): a 50k-word target lexicon of syllable-based
pseudo-words (lengths 2-14, Zipf counts) and a candidate corpus of a "related" source
language with an open vocabulary, as real text has: word types follow a Zipf-Mandelbrot
law (s = 1.1, q = 2.7) over 500k types (the most frequent word 5% of tokens, 30% of a
4096-sentence batch's tokens distinct words, as in agglutinative text). The 50k most
frequent types are cognates of the target words in frequency order (regular sound
changes, now and then an added or dropped syllable, 0-3 edits away) or, one in five,
unrelated words (another syllable inventory); the rarer types are affixed cognates
(Bantu-like prefixes and suffixes) and unrelated words. A worker's stream thus keeps
meeting new words (the "new words per token" printed per segment).

Modes: ``exact`` (nearest distance, no cap), ``distance=C`` (``max_word_distance``),
``edits=K`` (``max_word_edits``), ``edits=K+distance=C`` (both).

Per mode, per core (rapidfuzz ``workers=1``; rates are tokens per CPU-second of this
process, so other processes on the machine do not count; run under ``taskset -c 0``):
- cold: the stage core (tokenise + nearest-word search + sentence means) on the first
  ``--cold-batches`` batches with only the per-batch unique-word cache;
- stream: the same core with the per-worker memo over the whole stream (what
  ``LexicalFilter`` runs), overall and by segment, with the share of novel tokens;
- brute force with the same caps: ``process.cdist`` against the whole lexicon, timed on a
  sample of each cold batch's unique words and scaled to all of them; per token as the
  tokens come, and with the same per-batch unique-word cache; the ratio of the stage to it;
- identical results: nearest distances on every sampled word, and sentence scores on 300
  sentences recomputed from brute-force word distances.

With the exact mode, the last line is ``RESULT exact_tokens_per_s=N identical=true|false
before_tokens_per_s=B brute_tokens_per_s=R``: the cold per-core rate (issue 14's target:
300k), the same with the deletion depth used before issue 14, and brute force.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import pyarrow as pa

from xlcorpus.transforms.stages.lexfilter import Lexicon, SentenceScorer, brute_force_nearest, tokenize_batch
from xlcorpus.transforms.stages.lexfilter.index import DEFAULT_MAX_DELETES

TARGET_ONSETS = "b d f g h k l m n p r s t v w y z ch sh ny ng mb nd".split()
TARGET_VOWELS = "a e i o u".split()
OTHER_ONSETS = "q x c j kr tr pl st gl br".split()  # unrelated language: other consonants, clusters
OTHER_VOWELS = "a e i o u y ei ou".split()
# regular sound correspondences target -> source (applied per occurrence with p=0.5)
SHIFTS = [("t", "d"), ("l", "r"), ("v", "w"), ("o", "u"), ("sh", "s"), ("ch", "s"), ("z", "dz"), ("e", "i")]
PREFIXES = "ni u a tu m wa ki vi ku li ya za na ha".split()
SUFFIXES = "ni a wa ia ika isha eni o ye".split()
TARGET = 1_000_000
EXACT_TARGET = 300_000  # issue 14: exact nearest distance, cold, per core


def pseudo_word(rng: random.Random, onsets, vowels, lo: int = 2, hi: int = 14) -> str:
    while True:
        w = "".join((rng.choice(onsets) if rng.random() < 0.85 else "") + rng.choice(vowels)
                    for _ in range(rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5, 6))))
        if lo <= len(w) <= hi:
            return w


def make_lexicon(n: int, rng: random.Random) -> Lexicon:
    words: dict[str, None] = {}
    while len(words) < n:
        words[pseudo_word(rng, TARGET_ONSETS, TARGET_VOWELS)] = None
    ranked = list(words)
    counts = [max(1, int(2_000_000 / (i + 10))) for i in range(n)]  # Zipf
    return Lexicon(ranked, counts)


def cognate(word: str, rng: random.Random) -> str:
    out = word
    for a, b in SHIFTS:
        if a in out and rng.random() < 0.5:
            out = out.replace(a, b, 1)
    r = rng.random()
    if r < 0.1 and len(out) > 3:
        out = out[:-2]  # dropped final syllable
    elif r < 0.2:
        out = out + rng.choice(TARGET_VOWELS)  # added final vowel
    return out


def source_word(rank: int, lexicon: Lexicon, seed: int) -> str:
    """The source-language word type of a frequency rank (deterministic)."""
    rng = random.Random(seed * 1_000_003 + rank)
    n = len(lexicon)
    if rng.random() < 0.2:
        return pseudo_word(rng, OTHER_ONSETS, OTHER_VOWELS)
    base = cognate(lexicon.words[rank % n], rng)
    if rank < n:
        return base
    r = rng.random()  # a rarer type: an affixed form
    if r < 0.4:
        return rng.choice(PREFIXES) + base
    if r < 0.8:
        return base + rng.choice(SUFFIXES)
    return rng.choice(PREFIXES) + base + rng.choice(SUFFIXES)


def make_sentences(lexicon: Lexicon, n: int, seed: int, types: int = 500_000, s: float = 1.1) -> list[str]:
    nrng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(types) + 2.7) ** s  # Zipf-Mandelbrot
    cdf = np.cumsum(weights / weights.sum())
    lengths = nrng.integers(6, 21, n)
    picks = np.minimum(np.searchsorted(cdf, nrng.random(int(lengths.sum()))), types - 1)
    unique, inverse = np.unique(picks, return_inverse=True)
    vocab = [source_word(r, lexicon, seed) for r in unique.tolist()]
    ends = nrng.integers(0, 3, n).tolist()
    out, pos = [], 0
    for length, end in zip(lengths.tolist(), ends):
        words = [vocab[i] for i in inverse[pos:pos + length].tolist()]
        pos += length
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + ".!?"[end])
    return out


def parse_mode(mode: str) -> dict:
    caps = {"max_word_distance": None, "max_word_edits": None}
    if mode != "exact":
        for part in mode.split("+"):
            key, value = part.split("=")
            if key == "distance":
                caps["max_word_distance"] = float(value)
            elif key == "edits":
                caps["max_word_edits"] = int(value)
            else:
                raise SystemExit(f"unknown mode part {part!r}")
    return caps


def cpu() -> float:
    return time.process_time()


def cold_rate(scorer: SentenceScorer, batches: list[pa.Array]) -> float:
    """Tokens per CPU-second of the stage core on these batches, per-batch cache only."""
    tokens, spent = 0, 0.0
    for b in batches:
        tokens += len(tokenize_batch(b)[0])
        t = cpu()
        scorer.score(b)
        spent += cpu() - t
    return tokens / spent


def bench_mode(mode: str, lexicon: Lexicon, batches: list[list[str]], cold: int, brute_sample: int,
               seed: int, max_deletes: int) -> dict:
    caps = parse_mode(mode)
    print(f"\n== mode {mode}: max_word_distance={caps['max_word_distance']}, "
          f"max_word_edits={caps['max_word_edits']}, max_deletes={max_deletes}")
    t = cpu()
    scorer = SentenceScorer(lexicon, memo_size=0, max_deletes=max_deletes, **caps)
    print(f"index build: {cpu() - t:.2f} s CPU (once per worker)")

    # 1. cold: per-batch unique-word cache only
    cold_tokens, cold_time, cold_scores, search_time, cold_unique = 0, 0.0, [], 0.0, 0
    index = scorer.index
    for b in batches[:cold]:
        toks, _ = tokenize_batch(b)
        cold_tokens += len(toks)
        cold_unique += len(set(toks.to_pylist()))
        search = index.nearest_distance
        spent = [0.0]

        def timed(words, _search=search, _spent=spent):
            s = cpu()
            out = _search(words)
            _spent[0] += cpu() - s
            return out

        index.nearest_distance = timed
        t = cpu()
        cold_scores.append(scorer.score(b))
        cold_time += cpu() - t
        index.nearest_distance = search
        search_time += spent[0]
    cold_rate = cold_tokens / cold_time
    print(f"cold, per-batch cache:  {cold_rate:12,.0f} tokens/s/core ({cold_tokens:,} tokens, {cold_unique:,} unique "
          f"per batch summed; search {search_time:.2f} s = {1e6 * search_time / cold_unique:.1f} us/unique word, "
          f"tokenise + means {cold_time - search_time:.2f} s)")

    # 2. stream with the per-worker memo
    memo_scorer = SentenceScorer(lexicon, memo_size=200_000, max_deletes=max_deletes, **caps)
    seen: set[str] = set()
    rows = []
    for i, b in enumerate(batches):
        toks, _ = tokenize_batch(b)
        words = toks.to_pylist()
        distinct = set(words)
        novel = len(distinct - seen)  # words this worker has not met before: what the memo cannot answer
        seen |= distinct
        t = cpu()
        scores = memo_scorer.score(b)
        rows.append((len(words), cpu() - t, novel))
        if i < cold:
            assert np.array_equal(scores, cold_scores[i], equal_nan=True), "memo changed the scores"
    tokens = sum(r[0] for r in rows)
    total = sum(r[1] for r in rows)
    stream_rate = tokens / total
    per_batch = [r[0] / r[1] for r in rows]
    q = max(1, len(rows) // 4)
    print(f"stream, + worker memo:  {stream_rate:12,.0f} tokens/s/core over {tokens:,} tokens in {len(rows)} "
          f"batches")
    for name, seg in (("first batch", rows[:1]), ("first quarter", rows[:q]), ("last quarter", rows[-q:])):
        n_tok, n_time, n_novel = (sum(r[k] for r in seg) for k in range(3))
        print(f"    {name:14s} {n_tok / n_time:12,.0f} tokens/s/core, new words per token {n_novel / n_tok:.1%}")
    print(f"    per batch: median {statistics.median(per_batch):,.0f}, best {max(per_batch):,.0f} tokens/s/core")

    # 3. brute force with the same caps on a sample of each cold batch's unique words
    srng = random.Random(seed + 1)
    brute_time, sampled, identical, max_diff = 0.0, 0, True, 0.0
    for b in batches[:cold]:
        toks, _ = tokenize_batch(b)
        unique = sorted(set(toks.to_pylist()))
        sample = srng.sample(unique, min(brute_sample, len(unique)))
        t = cpu()
        ref = brute_force_nearest(sample, lexicon.words, caps["max_word_distance"], caps["max_word_edits"])
        brute_time += (cpu() - t) * len(unique) / len(sample)
        sampled += len(sample)
        got = scorer.index.nearest_distance(sample)
        max_diff = max(max_diff, float(np.abs(got - ref).max()))
        identical &= bool(np.array_equal(got, ref))
    brute_rate = cold_tokens / brute_time
    per_word = brute_time / cold_unique
    print(f"brute-force cdist, per-batch cache: {brute_rate:10,.0f} tokens/s/core; every token: "
          f"{1 / per_word:,.0f} tokens/s/core (timed on {sampled} sampled unique words, scaled)")
    print(f"ratio: cold stage / brute force with the same cache {cold_rate / brute_rate:.1f}x, "
          f"per token {cold_rate * per_word:.0f}x; stream with memo / brute force per batch "
          f"{stream_rate / brute_rate:.0f}x")
    print(f"identical nearest distances on {sampled} sampled words: {identical} (max |diff| {max_diff:g})")

    # 4. sentence scores from brute-force word distances
    sample_sentences = batches[0][:300].to_pylist()
    toks, tok_rows = tokenize_batch(sample_sentences)
    words = toks.to_pylist()
    unique = sorted(set(words))
    ref = dict(zip(unique, brute_force_nearest(unique, lexicon.words, caps["max_word_distance"],
                                               caps["max_word_edits"]).astype(np.float64).tolist()))
    sums = np.bincount(tok_rows, [ref[w] for w in words], minlength=len(sample_sentences))
    expected = (sums / np.bincount(tok_rows, minlength=len(sample_sentences))).astype(np.float32)
    same = bool(np.array_equal(cold_scores[0][:len(sample_sentences)], expected, equal_nan=True))
    print(f"identical sentence scores on {len(sample_sentences)} sentences: {same}")
    return {"mode": mode, "cold": cold_rate, "stream": stream_rate, "last": per_batch[-1],
            "median": statistics.median(per_batch), "brute": brute_rate, "identical": identical and same}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lexicon-words", type=int, default=50_000)
    ap.add_argument("--stream-sentences", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--cold-batches", type=int, default=3, help="batches timed with the per-batch cache only")
    ap.add_argument("--brute-sample", type=int, default=800, help="unique words per batch timed by brute force")
    ap.add_argument("--modes", default="exact,distance=0.5,edits=1,edits=2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-deletes", type=int, default=DEFAULT_MAX_DELETES, help="deletion-index depth (the stage's default)")
    ap.add_argument("--before-deletes", type=int, default=1,
                    help="depth before issue 14, timed cold on the same batches for the exact mode")
    args = ap.parse_args(argv)

    lexicon = make_lexicon(args.lexicon_words, random.Random(args.seed))
    sentences = make_sentences(lexicon, args.stream_sentences, args.seed)
    # the stage receives each batch's text column as an Arrow array
    batches = [pa.array(sentences[i:i + args.batch], pa.string()) for i in range(0, len(sentences), args.batch)]
    lengths = np.array([len(w) for w in lexicon.words])
    print(f"lexicon: {len(lexicon)} words, lengths {lengths.min()}-{lengths.max()} (mean {lengths.mean():.1f})")
    first, _ = tokenize_batch(batches[0])
    print(f"candidates: {len(sentences):,} sentences in {len(batches)} batches of {args.batch}; first batch "
          f"{len(first):,} tokens, {len(set(first.to_pylist())) / len(first):.1%} unique")
    results = [bench_mode(m, lexicon, batches, args.cold_batches, args.brute_sample, args.seed, args.max_deletes)
               for m in args.modes.split(",")]
    print(f"\n{'mode':22s} {'cold':>12s} {'stream+memo':>12s} {'median batch':>13s} {'brute(cache)':>13s}  "
          f"identical  >= {TARGET:,}/s (stream)")
    for r in results:
        print(f"{r['mode']:22s} {r['cold']:12,.0f} {r['stream']:12,.0f} {r['median']:13,.0f} {r['brute']:13,.0f}  "
              f"{r['identical']!s:9s}  {'met' if r['stream'] >= TARGET else 'NOT met'}")
    exact = next((r for r in results if r["mode"] == "exact"), None)
    if exact is not None:
        before = cold_rate(SentenceScorer(lexicon, memo_size=0, max_deletes=args.before_deletes),
                           batches[:args.cold_batches])
        print(f"\nexact, cold, per core: {exact['cold']:,.0f} tokens/s (target >= {EXACT_TARGET:,}: "
              f"{'met' if exact['cold'] >= EXACT_TARGET else 'NOT met'}); max_deletes={args.before_deletes} (before "
              f"issue 14) on the same batches {before:,.0f} ({exact['cold'] / before:.2f}x); brute-force cdist "
              f"{exact['brute']:,.0f} ({exact['cold'] / exact['brute']:.1f}x)")
        print(f"RESULT exact_tokens_per_s={exact['cold']:.0f} identical={str(exact['identical']).lower()} "
              f"before_tokens_per_s={before:.0f} brute_tokens_per_s={exact['brute']:.0f}")


if __name__ == "__main__":
    main()
