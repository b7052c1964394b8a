"""Benchmark: lexical-filter scoring against brute-force rapidfuzz, in one run.

    python bench/lexfilter.py [--lexicon-words 50000] [--sentences 40000] [--batch 4096]
                              [--brute-sample 1500] [--max-deletes 1] [--seed 0]

Data (deterministic, generated here): a 50k-word target lexicon of syllable-based
pseudo-words (lengths 2-14, Zipf counts) and candidate sentences from a "related"
source language: most source words are cognates of target words (regular sound
changes, now and then an added or dropped syllable, 0-3 edits away), a fifth of the
source vocabulary is unrelated (another syllable inventory); tokens follow a Zipf law.

Prints, per core (everything runs in this process, rapidfuzz ``workers=1``):
- the stage core (tokenise + NearestWordIndex + sentence mean) in candidate tokens/s,
  with only the per-batch unique-word cache, and with the per-worker memo as a worker
  sees a stream of batches;
- the nearest-word search rate on unique words (what a cache cannot help with);
- brute force: ``process.cdist`` against the whole lexicon (timed on a sample of each
  batch's unique words, then scaled: it is too slow to run on everything), both per
  token as the tokens come and with the same per-batch unique-word cache;
- the ratio, and whether both give identical results: nearest distances on the sampled
  words, and sentence scores on a sample of sentences.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from xlcorpus.transforms.lexfilter import (
    Lexicon, SentenceScorer, brute_force_nearest, tokenize_batch,
)

TARGET_ONSETS = "b d f g h k l m n p r s t v w y z ch sh ny ng mb nd".split()
TARGET_VOWELS = "a e i o u".split()
OTHER_ONSETS = "q x c j kr tr pl st gl br".split()  # unrelated language: other consonants, clusters
OTHER_VOWELS = "a e i o u y ei ou".split()
# regular sound correspondences target -> source (applied per occurrence with p=0.5)
SHIFTS = [("t", "d"), ("l", "r"), ("v", "w"), ("o", "u"), ("sh", "s"), ("ch", "s"), ("z", "dz"), ("e", "i")]


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


def make_sentences(lexicon: Lexicon, n: int, rng: random.Random, unrelated: float = 0.2) -> list[str]:
    vocab: list[str] = []
    for word in lexicon.words:  # frequency order: frequent target words give frequent cognates
        vocab.append(pseudo_word(rng, OTHER_ONSETS, OTHER_VOWELS) if rng.random() < unrelated
                     else cognate(word, rng))
    weights = 1.0 / (np.arange(len(vocab)) + 2.0)  # Zipf, s = 1
    cdf = np.cumsum(weights / weights.sum())
    lengths = np.random.default_rng(rng.randrange(1 << 30)).integers(6, 21, n)
    picks = np.searchsorted(cdf, np.random.default_rng(rng.randrange(1 << 30)).random(int(lengths.sum())))
    picks = np.minimum(picks, len(vocab) - 1)
    out, pos = [], 0
    for length in lengths.tolist():
        words = [vocab[i] for i in picks[pos:pos + length].tolist()]
        pos += length
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice(".!?"))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lexicon-words", type=int, default=50_000)
    ap.add_argument("--sentences", type=int, default=40_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--brute-sample", type=int, default=1500, help="unique words per batch timed by brute force")
    ap.add_argument("--max-deletes", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    lexicon = make_lexicon(args.lexicon_words, rng)
    sentences = make_sentences(lexicon, args.sentences, rng)
    batches = [sentences[i:i + args.batch] for i in range(0, len(sentences), args.batch)]
    tokens_per_batch, unique_per_batch = [], []
    for b in batches:
        toks, _ = tokenize_batch(b)
        tokens_per_batch.append(len(toks))
        unique_per_batch.append(len(set(toks.to_pylist())))
    n_tokens, n_unique = sum(tokens_per_batch), sum(unique_per_batch)
    lengths = np.array([len(w) for w in lexicon.words])
    print(f"lexicon: {len(lexicon)} words, lengths {lengths.min()}-{lengths.max()} (mean {lengths.mean():.1f})")
    print(f"candidates: {len(sentences)} sentences, {n_tokens} tokens in {len(batches)} batches of {args.batch}; "
          f"{n_unique} unique words summed over batches ({n_unique / n_tokens:.1%} of tokens)")

    start = time.perf_counter()
    scorer = SentenceScorer(lexicon, max_deletes=args.max_deletes, memo_size=0)
    print(f"index build (max_deletes={args.max_deletes}): {time.perf_counter() - start:.2f} s (once per worker)")

    # 1. stage core, per-batch unique-word cache only
    scores, search_time = [], 0.0
    search = scorer.index.nearest_distance

    def timed_search(words, _search=search):
        nonlocal search_time
        t = time.perf_counter()
        out = _search(words)
        search_time += time.perf_counter() - t
        return out

    scorer.index.nearest_distance = timed_search
    start = time.perf_counter()
    for b in batches:
        scores.append(scorer.score(b))
    core = time.perf_counter() - start
    scorer.index.nearest_distance = search
    core_rate = n_tokens / core
    print(f"stage core, per-batch cache:   {core_rate:12,.0f} tokens/s/core  ({core:.2f} s; nearest-word search "
          f"{search_time:.2f} s, tokenise + means {core - search_time:.2f} s)")
    print(f"nearest-word search, unique:   {n_unique / search_time:12,.0f} unique words/s/core")

    # 2. the same stream with the per-worker memo (what LexicalFilter runs with)
    memo_scorer = SentenceScorer(lexicon, max_deletes=args.max_deletes, memo_size=200_000)
    memo_scores, memo_times = [], []
    for b in batches:
        t = time.perf_counter()
        memo_scores.append(memo_scorer.score(b))
        memo_times.append(time.perf_counter() - t)
    memo = sum(memo_times)
    print(f"stage core, + worker memo:     {n_tokens / memo:12,.0f} tokens/s/core  ({memo:.2f} s over the stream; "
          f"first batch {tokens_per_batch[0] / memo_times[0]:,.0f}, last batch "
          f"{tokens_per_batch[-1] / memo_times[-1]:,.0f} tokens/s)")
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(scores, memo_scores))

    # 3. brute force on a sample of each batch's unique words, scaled to all of them
    brute_time, sampled, identical, max_diff = 0.0, 0, True, 0.0
    srng = random.Random(args.seed + 1)
    for b in batches:
        toks, _ = tokenize_batch(b)
        unique = sorted(set(toks.to_pylist()))
        sample = srng.sample(unique, min(args.brute_sample, len(unique)))
        t = time.perf_counter()
        ref = brute_force_nearest(sample, lexicon.words)
        brute_time += (time.perf_counter() - t) * len(unique) / len(sample)
        sampled += len(sample)
        got = scorer.index.nearest_distance(sample)
        max_diff = max(max_diff, float(np.abs(got - ref).max()))
        identical &= bool(np.array_equal(got, ref))
    brute_rate = n_tokens / brute_time
    per_word = brute_time / n_unique
    print(f"brute-force cdist, every token:     {1 / per_word:12,.0f} tokens/s/core  (timed on {sampled} of "
          f"{n_unique} unique words, scaled)")
    print(f"brute-force cdist, per-batch cache: {brute_rate:12,.0f} tokens/s/core, {1 / per_word:,.0f} "
          f"unique words/s/core")
    print(f"ratio stage core / brute force: {core_rate / brute_rate:.1f}x with the same per-batch cache, "
          f"{core_rate * per_word:.0f}x against brute force per token; search alone on unique words: "
          f"{brute_time / search_time:.1f}x")
    print(f"identical nearest distances on the {sampled} sampled words: {identical} (max |diff| {max_diff:g})")

    # 4. sentence scores from brute-force distances, on a sample of sentences
    sample_sentences = sentences[:300]
    toks, rows = tokenize_batch(sample_sentences)
    words = toks.to_pylist()
    unique = sorted(set(words))
    ref = dict(zip(unique, brute_force_nearest(unique, lexicon.words).astype(np.float64).tolist()))
    total = np.bincount(rows, [ref[w] for w in words], minlength=len(sample_sentences))
    expected = (total / np.bincount(rows, minlength=len(sample_sentences))).astype(np.float32)
    same = np.array_equal(scores[0][:len(sample_sentences)], expected, equal_nan=True)
    print(f"identical sentence scores on {len(sample_sentences)} sentences: {same}")
    target = 1_000_000
    print(f"target >= {target:,} tokens/s/core: per-batch cache {'met' if core_rate >= target else 'NOT met'}, "
          f"with worker memo {'met' if n_tokens / memo >= target else 'NOT met'}")


if __name__ == "__main__":
    main()
