"""uroman romanization with offset maps: identical to uroman on the whole line.

The reference is a separate, uncached ``uroman.Uroman()`` romanizing each line whole.
"""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import uroman
from hypothesis import given, settings
from hypothesis import strategies as st

from xlcorpus.transforms.stages.transliterate.romanize import RomanizedText, Romanizer, map_span, segments

# Sample sentences written for these tests, by script (language in the comment).
SENTENCES = {
    "Cyrl": ["Москва — столица России, в ней живут 13 миллионов человек.",  # rus
             "Вчера мы купили хлеб, молоко и яблоки на рынке.",
             "Київ стоїть на березі Дніпра; місту понад 1500 років."],  # ukr
    "Grek": ["Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και έχει πολλά μουσεία.",
             "Το καλοκαίρι του 2023 πήγαμε στη Σαντορίνη με το πλοίο."],
    "Arab": ["القاهرة هي أكبر مدينة في العالم العربي، ويسكنها أكثر من ٢٠ مليون نسمة.",
             "ذهبت إلى المكتبة يوم الثلاثاء لأقرأ كتابا جديدا.",
             "امروز هوا در تهران آفتابی است و دما ۲۵ درجه است."],  # fas
    "Hebr": ["ירושלים היא עיר עתיקה עם היסטוריה של 3000 שנה.",
             "אני אוהב לשתות קפה בבוקר עם חברים."],
    "Deva": ["भारत की राजधानी नई दिल्ली है और यहाँ २०११ में १.६ करोड़ लोग रहते थे।",
             "मैं कल सुबह बाज़ार जाऊँगा और सब्ज़ियाँ खरीदूँगा।",
             "नेपालमा सगरमाथा विश्वकै अग्लो हिमाल हो।"],  # nep
    "Beng": ["ঢাকা বাংলাদেশের রাজধানী এবং একটি ব্যস্ত শহর।",
             "আমি প্রতিদিন সকালে চা পান করি, ১৯৭১ সালের গল্প শুনি।"],
    "Taml": ["சென்னை தமிழ்நாட்டின் தலைநகரம் ஆகும்.", "நான் நேற்று ஒரு புத்தகம் வாங்கினேன்."],
    "Geor": ["თბილისი საქართველოს დედაქალაქია და მდებარეობს მტკვრის ნაპირზე."],
    "Armn": ["Երևանը Հայաստանի մայրաքաղաքն է, և այն շատ հին քաղաք է։"],
    "Ethi": ["አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።", "ሰላም፡ ለዓለም፡ ሁሉ።"],  # amh, with the wordspace
    "Thai": ["กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย", "ฉันชอบกินข้าวผัดกับไข่ดาว ทุกวัน"],
    "Hang": ["서울은 대한민국의 수도이며 인구는 약 950만 명입니다.", "저는 어제 친구와 함께 영화를 봤어요."],
    "Hani": ["北京是中华人民共和国的首都，人口超过两千万。", "我昨天在图书馆看了三本书。",
             "百分之五十的学生喜欢数学。"],
    "Jpan": ["東京は日本の首都で、とても大きな都市です。", "きのう、ラーメンを食べに行きました。",
             "コーヒーとケーキをください。"],
    "Latn": ["Le garçon a mangé une crème brûlée à Noël.", "Tiếng Việt có sáu thanh điệu khác nhau.",
             "İstanbul'da çok güzel bir gün geçirdik.", "Il-kelb ta' Marija jiekol il-ħobż."],
    "Khmr": ["ភ្នំពេញ គឺជារាជធានីនៃប្រទេសកម្ពុជា។"],
    "Tibt": ["བོད་ཡིག་ནི་སྐད་ཡིག་ཞིག་རེད།"],
    "Guru": ["ਪੰਜਾਬ ਵਿੱਚ ਪੰਜ ਦਰਿਆ ਵਗਦੇ ਹਨ।"],
    "Mymr": ["မြန်မာနိုင်ငံ၏ မြို့တော်သည် နေပြည်တော် ဖြစ်သည်။"],
    "Sinh": ["කොළඹ ශ්‍රී ලංකාවේ විශාලතම නගරයයි."],
    "Brai": ["⠠⠠⠃⠗⠁⠊⠇⠇⠑ ⠞⠑⠭⠞ ⠼⠁⠃ ⠉"],  # all caps and the number sign carry across spaces
    "Zyyy": ["The word Москва means Moscow, and 東京 means Tokyo (2024 data).",
             "Price: 1,299.50 € or ٣٥٠ ريال — 50% off! नमस्ते 👋",
             "Call 555-0199 at 10:30, pi is 3.14159, ½ and 23½, −5 and +7.",
             "二〇二四年 三千五百 负五 零点五 三分之一"],
}
# Pieces that trip uroman's context rules when they meet at a cut: parentheses and
# quotes that romanize to text with spaces, the Ethiopic wordspace, kana that double
# or lengthen, viramas and marks alone, Thai O ANG and pre-vowels, Khmer consonants,
# Braille capitals and number signs, CJK numerals and fraction words.
TRICKY = ["（", "）", "「", "」", "《", "》", "、", "。", "，", "፡", "።", "ー", "っ", "ッ", "ゃ", "्",
          "\u0301", "\u0300", "\u200d", "อ", "เ", "่", "ក", "យ", "្", "་", "ཀ", "⠠", "⠠⠠", "⠼", "⠁",
          "⠀", "百", "分之", "负", "零", "〇", "十", "½", "7", "0.5", "-", ".", ",", "'", "١٢", "३",
          "\u00a0", "\t", "\u3000", "ⲁ\u0300", "A", "ß", "İ", "ǅ", "ﻼ"]
WORDS = sorted({w for group in SENTENCES.values() for s in group for w in s.split()} | set(TRICKY))
SEPARATORS = [" "] * 6 + ["  ", "   ", ""]


@pytest.fixture(scope="module")
def reference():
    return uroman.Uroman()  # its own instance, cache off: the ground truth


@pytest.fixture(scope="module")
def romanizer():
    return Romanizer(cache_size=4096).load()


def whole_line(ref, line: str, lcode: str | None = None) -> RomanizedText | None:
    """The reference: text and edges of uroman on the whole line (None if it fails)."""
    try:
        edges = ref.romanize_string(line, lcode=lcode, rom_format=uroman.RomFormat.EDGES)
    except Exception:
        return None
    rows, out = [], 0
    for e in edges:
        rows.append((e.start, e.end, out, out + len(e.txt)))
        out += len(e.txt)
    text = "".join(e.txt for e in edges)
    assert text == ref.romanize_string(line, lcode=lcode)  # EDGES and STR agree
    return RomanizedText(text, np.array(rows, np.int32).reshape(-1, 4))


def assert_identical(rom: Romanizer, ref, lines: list[str], lcodes=None) -> None:
    texts, offsets = rom.romanize_batch(lines, lcodes, errors="null")
    bad = []
    for k, (line, text, offs) in enumerate(zip(lines, texts, offsets)):
        want = whole_line(ref, line, None if lcodes is None else lcodes[k])
        got = None if text is None else (text, offs.tolist())
        if got != (None if want is None else (want.text, want.offsets.tolist())):
            bad.append((line, text, None if want is None else want.text))
    assert not bad, f"{len(bad)} of {len(lines)} differ from whole-line uroman, e.g. {bad[:3]}"


def random_line(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
    line = words[0]
    for w in words[1:]:
        line += rng.choice(SEPARATORS) + w
    return rng.choice(["", "", "", " ", "  "]) + line + rng.choice(["", "", "", " ", "  "])


# --- segmentation ---------------------------------------------------------------------------
def test_segments_keep_trailing_spaces_and_join_back():
    assert segments("ab  cd e") == ["ab  ", "cd ", "e"]
    assert segments("  ab ") == ["  ", "ab "]
    assert segments("") == []
    assert segments("a\tb\u00a0c") == ["a\tb\u00a0c"]  # only ASCII spaces cut
    assert segments("⠠⠠⠁⠃ ⠉⠙") == ["⠠⠠⠁⠃ ⠉⠙"]  # Braille: the whole line
    for line in [random_line(random.Random(i)) for i in range(200)]:
        assert "".join(segments(line)) == line


@pytest.mark.parametrize("line", ["（测试） 好", "ሰላም፡ ዓለም", "⠠⠠⠁⠃ ⠉⠙"])
def test_context_across_spaces_is_respected(romanizer, reference, line):
    """Word-by-word uroman gets these wrong; the segment rule does not."""
    word_by_word = " ".join(reference.romanize_string(w) for w in line.split(" "))
    whole = reference.romanize_string(line)
    assert word_by_word != whole
    assert romanizer.romanize(line).text == whole


# --- identity with whole-line uroman -----------------------------------------------------
@pytest.mark.parametrize("script", sorted(SENTENCES))
def test_real_text_is_identical_to_whole_line_uroman(romanizer, reference, script):
    lines = SENTENCES[script]
    lines = lines + [" ".join(lines), "  ".join(reversed(lines))]  # longer lines, other neighbours
    assert_identical(romanizer, reference, lines)
    assert_identical(romanizer, reference, lines)  # again, now from the cache


def test_mixed_script_lines_are_identical(romanizer, reference):
    rng = random.Random(7)
    sentences = [s for group in SENTENCES.values() for s in group]
    lines = [" ".join(rng.sample(sentences, rng.randint(2, 4))) for _ in range(60)]
    assert_identical(romanizer, reference, lines)


def test_generated_lines_are_identical(reference):
    """Fuzz: 1500 lines recombining words, tricky pieces and separators, tiny cache."""
    rng = random.Random(1234)
    lines = [random_line(rng) for _ in range(1500)]
    rom = Romanizer(cache_size=256)  # evictions happen
    assert_identical(rom, reference, lines)
    assert rom.cache_info().hits > 1000  # the cache is doing its job


def random_number(rng: random.Random) -> str:
    """A number-like token: ASCII digits (zeros included) joined by number punctuation."""
    def digits():
        return "".join(rng.choice("0123456789" if rng.random() < 0.8 else "00") for _ in range(rng.randint(1, 6)))
    token = digits()
    for _ in range(rng.randint(0, 3)):
        token += rng.choice([".", ",", "/", ":", "-", "+", "..", "%"]) + digits()
    return rng.choice(["", "", "-", "+", "."]) + token + rng.choice(["", "", "%", ".", ",", "-"])


def test_numbers_romanize_by_digit_pattern_identically(reference):
    """Number segments go through their digit pattern; on 1200 lines with 900+ distinct
    numbers (next to words and tricky pieces) the output is still whole-line uroman's,
    and uroman is called once per pattern, not once per number."""
    rng = random.Random(99)
    lines = []
    for _ in range(1200):
        toks = [random_number(rng) if rng.random() < 0.6 else rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
        lines.append(" ".join(toks) + rng.choice(["", "", " ", "  "]))
    rom = Romanizer(cache_size=4096)
    assert_identical(rom, reference, lines)
    assert len({s for line in lines for s in segments(line) if s.strip(" ")[:1].isdigit()}) > 900
    def nonzero(k):
        return "".join(str(rng.randint(1, 9)) for _ in range(k))
    prices = [f"{nonzero(2)}.{nonzero(2)} {nonzero(1)}/{nonzero(2)}/{nonzero(4)}" for _ in range(400)]
    fresh = Romanizer(cache_size=4096)
    assert_identical(fresh, reference, prices)
    assert fresh.cache_info().misses == 2  # one uroman call per pattern: "11.11 " and "1/11/1111"
    huge = "1" * 5000  # past Python's int() digit limit: uroman fails on it, so must the romanizer
    assert_identical(rom, reference, [huge, f"x {huge} y", "12.5 " + huge])


@settings(max_examples=150, deadline=None)
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=10),
       seps=st.lists(st.sampled_from(SEPARATORS), min_size=10, max_size=10))
def test_property_identical_to_whole_line(romanizer, reference, words, seps):
    line = "".join(w + s for w, s in zip(words, seps))
    assert_identical(romanizer, reference, [line])


def test_language_codes_are_passed_per_line(romanizer, reference):
    lines = ["राम राम", "राम राम", "राम राम"]
    lcodes = ["hin", "san", None]
    texts, _ = romanizer.romanize_batch(lines, lcodes)
    assert texts == ["raam raam", "raama raama", "raam raam"]  # Sanskrit keeps the final schwa
    assert_identical(romanizer, reference, lines, lcodes)
    assert Romanizer(lcode="san").romanize("राम").text == "raama"


# --- outputs and offsets ----------------------------------------------------------------
@pytest.mark.parametrize("word, expected", [
    ("Москва", "Moskva"), ("Αθήνα", "Athena"), ("서울", "seoul"), ("नमस्ते", "namaste"),
    ("ラーメン", "raamen"), ("東京", "dongjing"), ("ქართული", "khartuli"), ("Հայաստան", "Hayastan"),
    ("ሰላም", "salaame"), ("தமிழ்", "tamil"), ("বাংলা", "baanglaa"), ("שלום", "shlvm"),
    ("مرحبا", "mrhba"), ("Crème brûlée", "Creme brulee"), ("٢٠٢٤ 五百", "2024 500"),
])
def test_known_romanizations(romanizer, word, expected):
    assert romanizer.romanize(word).text == expected


def test_offsets_cover_both_texts_and_spans_follow(romanizer):
    line = "Привет, мир! 五百 ٢٠٢٤ ラーメン"
    res = romanizer.romanize(line)
    o = res.offsets
    assert o.dtype == np.int32 and o.shape[1] == 4
    assert o[0, 0] == 0 and o[-1, 1] == len(line) and np.array_equal(o[1:, 0], o[:-1, 1])
    assert o[0, 2] == 0 and o[-1, 3] == len(res.text) and np.array_equal(o[1:, 2], o[:-1, 3])
    assert res.text == "Privet, mir! 500 2024 raamen"
    assert res.text[slice(*map_span(o, 8, 11))] == "mir"
    assert res.text[slice(*map_span(o, 0, 11))] == "Privet, mir"
    assert res.text[slice(*map_span(o, 13, 15))] == "500"
    assert map_span(o, 13, 14) is None  # 五 alone: inside the number edge 五百 -> 500
    assert res.text[slice(*map_span(o, 17, 19))] == "02"  # digit for digit inside ٢٠٢٤ -> 2024
    assert res.text[slice(*map_span(o, 21, 25))] == "raamen"
    assert map_span(o, 22, 25) is None  # ー is inside the edge ラー -> raa
    assert map_span(o, 3, 3) is None and map_span(o, 20, 40) is None


def test_map_span_on_a_dropped_piece():
    o = np.array([[0, 2, 0, 2], [2, 3, 2, 2], [3, 5, 2, 5]], np.int32)  # middle char dropped
    assert map_span(o, 0, 5) == (0, 5)
    assert map_span(o, 2, 3) is None  # romanizes to nothing
    assert map_span(o, 1, 2) == (1, 2)  # inside a same-length edge
    assert map_span(o, 3, 4) is None  # inside a rewritten edge
    assert map_span(np.zeros((0, 4), np.int32), 0, 1) is None


def test_batch_shapes_empty_lines_and_views(romanizer):
    texts, offsets = romanizer.romanize_batch(["", "  ", "Ελλάδα", ""])
    assert texts == ["", "  ", "Ellada", ""]
    assert [o.shape for o in offsets] == [(0, 4), (2, 4), (6, 4), (0, 4)]
    assert romanizer.romanize_batch([]) == ([], [])
    a = romanizer.romanize("Ελλάδα Ελλάδα").offsets
    a[:] = -1  # callers own their arrays: the cache is untouched
    assert romanizer.romanize("Ελλάδα Ελλάδα").offsets[-1].tolist() == [12, 13, 12, 13]


# --- failures, pickling -------------------------------------------------------------------
class _Failing:
    """Stands in for uroman and fails on one word."""

    def __init__(self, real):
        self.real = real

    def romanize_string(self, s, **kw):
        if "BOOM" in s:
            raise RuntimeError("uroman broke")
        return self.real.romanize_string(s, **kw)


def test_a_failing_line_raises_or_becomes_null():
    rom = Romanizer(cache_size=0).load()
    rom._uroman = _Failing(rom._uroman)
    with pytest.raises(RuntimeError) as info:
        rom.romanize_batch(["ok", "x BOOM y"])
    assert "row 1" in "".join(info.value.__notes__)
    texts, offsets = rom.romanize_batch(["Σ", "x BOOM y", "Ω"], errors="null")
    assert texts == ["S", None, "O"] and offsets[1] is None and offsets[2].tolist() == [[0, 1, 0, 1]]
    with pytest.raises(ValueError):
        rom.romanize_batch(["x"], errors="ignore")


def test_romanizer_pickles_without_uroman(romanizer):
    fresh = Romanizer(cache_size=10, lcode="san")
    assert fresh._cached is None  # nothing loaded at construction
    for rom in (fresh, romanizer):
        copy = pickle.loads(pickle.dumps(rom))
        assert copy._cached is None and (copy.cache_size, copy.lcode) == (rom.cache_size, rom.lcode)
    assert pickle.loads(pickle.dumps(fresh)).romanize("राम").text == "raama"
