"""Benchmark: xlcorpus ``Romanizer`` against raw uroman, on the same multi-script lines.

    python bench/transliterate.py [--lines 50000] [--sample 1000] [--batch 2000] [--check-all]

Prints lines/s of:
- ``Romanizer.romanize_batch`` (text + offset maps), built once outside the timed region
  as the stage does in ``Transliterate.setup``; cold cache (first pass) and warm (second pass);
- the same for the method before issue 14 (``PreviousRomanizer`` below: one LRU-cached
  uroman call per distinct segment, numbers included, offsets gathered segment by
  segment), and the speedups of today's over it (targets: cold >= 3x, warm >= 1.5x);
- uroman ``romanize_string(line)`` uncached, on an evenly spaced subsample (it is too slow
  for all lines; targets: >= 10x);
- uroman with its own cache on (``Uroman(cache_size=65536)``) on all lines (target >= 1x);
and how many outputs differ from uncached whole-line uroman: Romanizer text and offsets
on the subsample (all lines with --check-all), uroman-cached text on the subsample.
Times are CPU seconds of this process (the machine may be shared). The last line is
``RESULT cold_speedup=X warm_speedup=Y mismatches=N same_as_before=true|false``.

The lines are generated deterministically from the sentences below (written for this
benchmark) by recombining their words and sentences, mixing scripts and adding numbers.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

SENTENCES = {  # script -> sentences; no-space scripts are recombined by sentence
    "Cyrl": ["Москва — столица России, в ней живут миллионы людей.",
             "Вчера мы купили хлеб, молоко и яблоки на рынке.",
             "Київ стоїть на березі Дніпра і має давню історію."],
    "Grek": ["Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και έχει πολλά μουσεία.",
             "Το καλοκαίρι πήγαμε στη Σαντορίνη με το πλοίο."],
    "Arab": ["القاهرة هي أكبر مدينة في العالم العربي، ويسكنها ملايين الناس.",
             "ذهبت إلى المكتبة يوم الثلاثاء لأقرأ كتابا جديدا.",
             "امروز هوا در تهران آفتابی است و دما بالاست."],
    "Hebr": ["ירושלים היא עיר עתיקה עם היסטוריה ארוכה.", "אני אוהב לשתות קפה בבוקר עם חברים."],
    "Deva": ["भारत की राजधानी नई दिल्ली है और यहाँ करोड़ों लोग रहते हैं।",
             "मैं कल सुबह बाज़ार जाऊँगा और सब्ज़ियाँ खरीदूँगा।", "नेपालमा सगरमाथा विश्वकै अग्लो हिमाल हो।"],
    "Beng": ["ঢাকা বাংলাদেশের রাজধানী এবং একটি ব্যস্ত শহর।", "আমি প্রতিদিন সকালে চা পান করি।"],
    "Taml": ["சென்னை தமிழ்நாட்டின் தலைநகரம் ஆகும்.", "நான் நேற்று ஒரு புத்தகம் வாங்கினேன்."],
    "Geor": ["თბილისი საქართველოს დედაქალაქია და მდებარეობს მტკვრის ნაპირზე."],
    "Armn": ["Երևանը Հայաստանի մայրաքաղաքն է, և այն շատ հին քաղաք է։"],
    "Ethi": ["አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።", "ሰላም፡ ለዓለም፡ ሁሉ።"],
    "Hang": ["서울은 대한민국의 수도이며 인구가 많습니다.", "저는 어제 친구와 함께 영화를 봤어요."],
    "Latn": ["Le garçon a mangé une crème brûlée à Noël.", "Tiếng Việt có sáu thanh điệu khác nhau.",
             "İstanbul'da çok güzel bir gün geçirdik.", "Il-kelb ta' Marija jiekol il-ħobż."],
    "Guru": ["ਪੰਜਾਬ ਵਿੱਚ ਪੰਜ ਦਰਿਆ ਵਗਦੇ ਹਨ।"],
    "Mymr": ["မြန်မာနိုင်ငံ၏ မြို့တော်သည် နေပြည်တော် ဖြစ်သည်။"],
}
UNSPACED = {  # scripts written without spaces between words
    "Thai": ["กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย", "ฉันชอบกินข้าวผัดกับไข่ดาว", "วันนี้อากาศดีมาก"],
    "Hani": ["北京是中华人民共和国的首都。", "我昨天在图书馆看了三本书。", "百分之五十的学生喜欢数学。"],
    "Jpan": ["東京は日本の首都です。", "きのう、ラーメンを食べに行きました。", "コーヒーとケーキをください。"],
    "Khmr": ["ភ្នំពេញ គឺជារាជធានីនៃប្រទេសកម្ពុជា។"],
    "Tibt": ["བོད་ཡིག་ནི་སྐད་ཡིག་ཞིག་རེད།"],
}


def make_lines(n: int, seed: int = 0) -> list[str]:
    """n lines: word salads per script (70%), unspaced sentences (15%), mixed scripts (15%);
    a fifth of the lines carry a number (dates, amounts, decimals: mostly unique tokens)."""
    rng = random.Random(seed)
    words = {s: [w for sent in sents for w in sent.split()] for s, sents in SENTENCES.items()}
    scripts, unspaced = sorted(words), sorted(UNSPACED)
    lines = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.70:
            pool = words[rng.choice(scripts)]
            toks = [rng.choice(pool) for _ in range(rng.randint(5, 18))]
        elif kind < 0.85:
            sents = UNSPACED[rng.choice(unspaced)]
            toks = [rng.choice(sents) for _ in range(rng.randint(1, 2))]
        else:
            toks = [rng.choice(words[rng.choice(scripts)]) for _ in range(rng.randint(4, 14))]
            toks.insert(rng.randrange(len(toks) + 1), rng.choice(UNSPACED[rng.choice(unspaced)]))
        if rng.random() < 0.2:
            number = rng.choice([str(rng.randint(1, 3000)), f"{rng.randint(0, 99)}.{rng.randint(0, 99)}",
                                 f"{rng.randint(1, 28)}/{rng.randint(1, 12)}/20{rng.randint(10, 25)}",
                                 f"{rng.randint(2, 99)}%"])
            toks.insert(rng.randrange(len(toks) + 1), number)
        lines.append(" ".join(toks))
    return lines


class PreviousRomanizer:
    """The Romanizer as it was before issue 14, kept here as the baseline: an LRU cache
    of (segment, lcode) -> uroman edges, every number segment its own uroman call, and
    per-segment Python bookkeeping for the offsets."""

    def __init__(self, cache_size: int):
        import functools

        from xlcorpus.transforms.stages.transliterate.romanize import shared_uroman

        self._uroman = shared_uroman()
        self._cached = functools.lru_cache(maxsize=cache_size)(self._romanize_piece)

    def _romanize_piece(self, piece, lcode):
        from uroman import RomFormat

        edges = self._uroman.romanize_string(piece, lcode=lcode, rom_format=RomFormat.EDGES)
        rows, texts, out = [], [], 0
        for e in edges:
            rows.append((e.start, e.end, out, out + len(e.txt)))
            texts.append(e.txt)
            out += len(e.txt)
        offsets = np.array(rows, np.int32).reshape(-1, 4)
        offsets.flags.writeable = False
        return "".join(texts), offsets

    def romanize_batch(self, lines, lcode=None):
        from xlcorpus.transforms.stages.transliterate.romanize import segments

        texts, counts, pieces, src_shift, out_shift = [], [], [], [], []
        for line in lines:
            parts, src, out, n = [], 0, 0, 0
            for seg in segments(line):
                text, offs = self._cached(seg, lcode)
                parts.append(text)
                pieces.append(offs)
                src_shift.append(src)
                out_shift.append(out)
                src += len(seg)
                out += len(text)
                n += len(offs)
            texts.append("".join(parts))
            counts.append(n)
        flat = np.concatenate(pieces)
        sizes = np.fromiter(map(len, pieces), np.int64, len(pieces))
        flat[:, :2] += np.repeat(np.asarray(src_shift, np.int32), sizes)[:, None]
        flat[:, 2:] += np.repeat(np.asarray(out_shift, np.int32), sizes)[:, None]
        result, start = [], 0
        for c in counts:
            result.append(flat[start:start + c])
            start += c
        return texts, result


def two_passes(rom, batches: list[list[str]]) -> tuple[float, float, list]:
    """(cold, warm, first-pass results) of romanize_batch over all batches twice; CPU seconds
    of this process (the machine is shared: other processes do not count)."""
    results = []
    t = time.process_time()
    for b in batches:
        results.append(rom.romanize_batch(b))
    cold = time.process_time() - t
    t = time.process_time()
    for b in batches:
        rom.romanize_batch(b)
    return cold, time.process_time() - t, results


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:12,.0f} lines/s  ({n:,} lines in {seconds:.2f} s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--sample", type=int, default=1000, help="lines for uncached uroman and the check")
    ap.add_argument("--batch", type=int, default=2000, help="lines per romanize_batch call")
    ap.add_argument("--cache-size", type=int, default=1 << 18)
    ap.add_argument("--check-all", action="store_true", help="compare every line with uncached uroman")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import uroman

    from xlcorpus.transforms.stages.transliterate.romanize import Romanizer, segments

    lines = make_lines(args.lines, args.seed)
    step = max(1, len(lines) // args.sample)
    sample_idx = list(range(0, len(lines), step))[: args.sample]
    sample = [lines[i] for i in sample_idx]
    n_tokens = sum(len(line.split()) for line in lines)
    print(f"corpus: {len(lines):,} lines, {n_tokens:,} tokens, {len(set(lines)):,} distinct lines, "
          f"{len({s for line in lines for s in segments(line)}):,} distinct segments; "
          f"subsample: {len(sample):,} lines (every {step}th)")

    # Built once, outside the timed region, as Transliterate.setup would; uroman's own
    # memos (abugida, Hangul) are warmed on other lines first, so neither method pays them.
    Romanizer(cache_size=args.cache_size).load().romanize_batch(make_lines(2000, args.seed + 1))
    batches = [lines[i:i + args.batch] for i in range(0, len(lines), args.batch)]
    prev_cold, prev_warm, prev_results = two_passes(PreviousRomanizer(args.cache_size), batches)
    rom = Romanizer(cache_size=args.cache_size).load()
    cold, warm, results = two_passes(rom, batches)
    same_as_prev = all(a[0] == b[0] and all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))
                       for a, b in zip(results, prev_results))
    texts = [x for r in results for x in r[0]]
    offsets = [x for r in results for x in r[1]]
    info = rom.cache_info()

    ref = uroman.Uroman()  # uncached (the library default)
    t = time.process_time()
    ref_texts = {i: ref.romanize_string(lines[i]) for i in sample_idx}
    uncached = time.process_time() - t

    cached_uroman = uroman.Uroman()
    cached_uroman.reset_cache(65536)  # uroman's DEFAULT_ROM_MAX_CACHE_SIZE; splits lines itself
    t = time.process_time()
    cached_texts = [cached_uroman.romanize_string(line) for line in lines]
    cached = time.process_time() - t

    print(f"before issue 14, cold cache:           {rate(len(lines), prev_cold)}")
    print(f"before issue 14, warm cache:           {rate(len(lines), prev_warm)}")
    print(f"Romanizer (text + offsets), cold cache: {rate(len(lines), cold)}")
    print(f"Romanizer (text + offsets), warm cache: {rate(len(lines), warm)}")
    print(f"  cache: {info.hits:,} hits, {info.misses:,} uroman calls (cold pass + warm pass)")
    cold_x, warm_x = prev_cold / cold, prev_warm / warm
    print(f"speedup over the method before issue 14: cold {cold_x:.2f}x (target >= 3x) "
          f"{'OK' if cold_x >= 3 else 'MISSED'}, warm {warm_x:.2f}x (target >= 1.5x) "
          f"{'OK' if warm_x >= 1.5 else 'MISSED'}; same texts and offsets on every line: {same_as_prev}")
    print(f"uroman uncached (subsample):           {rate(len(sample), uncached)}")
    print(f"uroman cache_size=65536:               {rate(len(lines), cached)}")
    r_unc, r_cac = (len(lines) / cold) / (len(sample) / uncached), (len(lines) / cold) / (len(lines) / cached)
    print(f"ratio Romanizer cold / uroman uncached: {r_unc:8.1f}x  (target >= 10x) "
          f"{'OK' if r_unc >= 10 else 'MISSED'}")
    print(f"ratio Romanizer cold / uroman cached:   {r_cac:8.2f}x  (target >= 1x)  "
          f"{'OK' if r_cac >= 1 else 'MISSED'}")

    # Identity with uncached whole-line uroman: text and offsets (from its EDGES).
    check_idx = range(len(lines)) if args.check_all else sample_idx
    text_bad = offs_bad = 0
    for i in check_idx:
        edges = ref.romanize_string(lines[i], rom_format=uroman.RomFormat.EDGES)
        want_text = "".join(e.txt for e in edges)
        ends = np.cumsum([len(e.txt) for e in edges], dtype=np.int64)
        want = np.array([(e.start, e.end, o - len(e.txt), o) for e, o in zip(edges, ends)],
                        np.int32).reshape(-1, 4)
        assert i not in ref_texts or ref_texts[i] == want_text
        text_bad += texts[i] != want_text
        offs_bad += not np.array_equal(offsets[i], want)
    where = "all lines" if args.check_all else "subsample"
    print(f"Romanizer vs uncached whole-line uroman ({where}, {len(check_idx):,} lines): "
          f"{text_bad} text mismatches, {offs_bad} offset-map mismatches -> "
          f"{'ALL IDENTICAL' if text_bad == offs_bad == 0 else 'DIFFERENT'}")
    cached_bad = sum(cached_texts[i] != ref_texts[i] for i in sample_idx)
    print(f"uroman cached vs uncached (subsample, {len(sample):,} lines): {cached_bad} text mismatches")
    print(f"RESULT cold_speedup={cold_x:.2f} warm_speedup={warm_x:.2f} mismatches={text_bad + offs_bad} "
          f"same_as_before={str(same_as_prev).lower()}")


if __name__ == "__main__":
    main()
