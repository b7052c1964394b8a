"""The synthetic pair's vocabulary and grammar tables: the target language's cases,
postpositions and tenses, the English-like word lists, the invented lexicon, the
name pool with its held-out fifth, and name respelling (``transliterate``)."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

LABELS = ("PER", "LOC", "ORG", "MISC")
SPLITS = ("train", "dev", "test", "demo")
SRC_LANG, TGT_LANG = "en", "xx"
OPEN, CLOSE = "[", "]"
PUNCT = "."

MODEL_NAME = "synth-en-xx"  # the shipped reference model trained on this pair (bench/train_reference_mt.py)


def reference_model_dir() -> Path:
    """The shipped CTranslate2 model folder (``model.bin``, ``spm.model``, ``MODEL_CARD.md``...)."""
    from xlcorpus.transforms.core.resources import shipped_dir

    return shipped_dir("models") / MODEL_NAME


# -- the target language's grammar ------------------------------------------------
CASES = {"nom": "ka", "acc": "ro", "loc": "sa", "abl": "tu", "all": "ne"}
PREP_CASE = {"in": "loc", "at": "loc", "from": "abl", "to": "all"}
POSTPOSITIONS = {"with": "mun", "near": "pali", "for": "varu", "during": "aiko", "about": "teso"}
TENSES = {"past": "ta", "present": "ni", "future": "si"}
COMPLEMENTIZER = "ke"  # ends a "that"-clause
TRANSLIT = (("ph", "f"), ("th", "t"), ("ch", "ts"), ("sh", "s"), ("c", "k"), ("q", "k"),
            ("x", "ks"), ("w", "v"), ("j", "y"), ("y", "i"))
VOWELS = set("aeiou")

# -- the English-like side --------------------------------------------------------
NOUNS = ("dog", "house", "book", "car", "letter", "report", "child", "teacher", "doctor",
         "farmer", "ship", "bridge", "garden", "river", "market", "school", "song", "story",
         "picture", "horse", "king", "queen", "soldier", "student", "minister", "team",
         "village", "road", "tower", "gift", "message", "plan", "law", "contract", "museum",
         "station", "meeting", "festival", "journey", "treaty", "window", "door", "bottle",
         "table", "letterbox", "painter", "singer", "writer", "judge", "officer", "company",
         "factory", "island", "mountain", "forest", "bank", "church", "hospital", "airport",
         "train", "boat", "coin", "map", "sword", "crown", "field", "wall", "city")
ADJECTIVES = ("big", "small", "old", "new", "red", "green", "young", "famous", "quiet",
              "strong", "long", "short", "rich", "poor", "happy", "angry", "beautiful",
              "dark", "bright", "strange", "secret", "final", "northern", "southern", "golden",
              "broken", "empty", "wise")
# (base, third person singular, past)
VERBS = (("visit", "visits", "visited"), ("see", "sees", "saw"), ("meet", "meets", "met"),
         ("write", "writes", "wrote"), ("buy", "buys", "bought"), ("praise", "praises", "praised"),
         ("help", "helps", "helped"), ("find", "finds", "found"), ("sell", "sells", "sold"),
         ("build", "builds", "built"), ("call", "calls", "called"), ("follow", "follows", "followed"),
         ("thank", "thanks", "thanked"), ("choose", "chooses", "chose"), ("join", "joins", "joined"),
         ("leave", "leaves", "left"), ("love", "loves", "loved"), ("open", "opens", "opened"),
         ("paint", "paints", "painted"), ("read", "reads", "read"), ("sign", "signs", "signed"),
         ("support", "supports", "supported"), ("warn", "warns", "warned"), ("watch", "watches", "watched"),
         ("attack", "attacks", "attacked"), ("describe", "describes", "described"),
         ("defend", "defends", "defended"), ("fund", "funds", "funded"), ("hire", "hires", "hired"),
         ("invite", "invites", "invited"))
SAY = ("say", "says", "said")
PREPOSITIONS = tuple(PREP_CASE) + tuple(POSTPOSITIONS)
LOC_PREFIX_HEADS = ("North", "South", "New", "Lake", "Mount", "Port")  # "North X"
LOC_SUFFIX_HEADS = ("River", "City", "Island", "Valley")  # "X River"
ORG_HEADS = ("Bank", "University", "Group", "Times", "Company", "Party", "Institute", "Council")
ORG_OF_HEADS = ("Bank", "University", "Institute", "Council")  # "Bank of X" too
MISC_EVENT_HEADS = ("Cup", "Games", "Festival", "Prize", "Award", "Open")
HEAD_WORDS = LOC_PREFIX_HEADS + LOC_SUFFIX_HEADS + ORG_HEADS + MISC_EVENT_HEADS


# -- deterministic invented words ---------------------------------------------------
def _lexicon() -> dict[str, str]:
    """English word -> target word (lowercase; heads are capitalised where used)."""
    rng = random.Random("xlcorpus-synthetic-lexicon-v1")
    onsets = ["p", "t", "k", "m", "n", "l", "r", "s", "v", "d", "g", "b", "h", "z"]
    vowels = ["a", "e", "i", "o", "u"]
    taken = set(CASES.values()) | set(POSTPOSITIONS.values()) | set(TENSES.values()) | {COMPLEMENTIZER}
    out: dict[str, str] = {}
    words = (list(NOUNS) + list(ADJECTIVES) + [v[0] for v in VERBS] + [SAY[0]]
             + [h.lower() for h in HEAD_WORDS])
    for w in words:
        if w in out:
            continue
        while True:
            n = rng.choice((2, 2, 3))
            cand = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(n))
            if w in {v[0] for v in VERBS} or w == SAY[0]:
                cand = cand[:-1]  # verb stems end in a consonant; the tense suffix adds the vowel
            if cand not in taken:
                taken.add(cand)
                out[w] = cand
                break
    return out


LEX = _lexicon()


def _name_pool() -> list[str]:
    """Capitalised name words. Letters that ``TRANSLIT`` rewrites are common on purpose."""
    rng = random.Random("xlcorpus-synthetic-names-v1")
    onsets = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
              "c", "w", "j", "ch", "th", "ph", "sh", "q", "br", "st", "tr", "gr"]
    vowels = ["a", "e", "i", "o", "u", "a", "e", "o", "y", "ai", "ou"]
    codas = ["", "", "", "n", "r", "l", "s", "x", "rd", "nd", "m", "t", "ck"]
    seen: set[str] = set()
    pool: list[str] = []
    while len(pool) < 12000:  # many names: the model must learn to copy, not memorise
        n = rng.choice((2, 2, 3))
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(n)) + rng.choice(codas)
        word = word.capitalize()
        if word not in seen and 4 <= len(word) <= 11 and word.lower() not in LEX.values():
            seen.add(word)
            pool.append(word)
    return pool


NAMES = _name_pool()


def is_held_out(name: str) -> bool:
    """A fixed fifth of the name pool never appears in the train split."""
    return zlib.crc32(name.encode()) % 5 == 0


# a name must not be an English word of the generator ("Games" is in the pool)
_ENGLISH = {w.lower() for w in NOUNS + ADJECTIVES + HEAD_WORDS + PREPOSITIONS + ("the", "a", "will", "that", "of")}
_ENGLISH |= {form for verb in VERBS + (SAY,) for form in verb}
TRAIN_NAMES = [n for n in NAMES if not is_held_out(n) and n.lower() not in _ENGLISH]
HELD_OUT_NAMES = [n for n in NAMES if is_held_out(n) and n.lower() not in _ENGLISH]


def transliterate(word: str) -> str:
    """The target spelling of a name word (greedy left-to-right, case kept on the first letter)."""
    low, out, i = word.lower(), [], 0
    while i < len(low):
        for a, b in TRANSLIT:
            if low.startswith(a, i):
                out.append(b)
                i += len(a)
                break
        else:
            out.append(low[i])
            i += 1
    res = "".join(out)
    return res[:1].upper() + res[1:] if word[:1].isupper() else res


def case_suffix(word: str, case: str) -> str:
    """What is glued after ``word`` for ``case``: an epenthetic ``e`` after a consonant."""
    suf = CASES[case]
    return suf if word[-1:].lower() in VOWELS else "e" + suf
