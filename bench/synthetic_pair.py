"""A seeded synthetic language pair with NER gold spans on both sides, by construction.

The source side ("English-like", code ``en``) is SVO English built from a fixed word
list; the target side (code ``xx``) is an invented language with its own lexicon and:

- SOV order, postpositions and adjectives after nouns; no articles;
- case suffixes glued onto the last word of a noun phrase, names included
  (subject ``-ka``, object ``-ro``, locative ``-sa``, ablative ``-tu``, allative ``-ne``;
  an ``e`` is inserted after a consonant), so ``Maria`` -> ``Mariaka``,
  ``Berg`` -> ``Bergeka``: an entity's edge falls inside a target word;
- other prepositions become separate postposition words (``with Anna`` -> ``Anna mun``);
- verb tense as a suffix on the verb stem (``visited`` -> ``velota``, ``will visit`` -> ``velosi``);
- name words respelled by one fixed letter mapping (``TRANSLIT``: ``ph->f th->t ch->ts
  sh->s c->k q->k x->ks w->v j->y y->i``), so names containing those letters are
  transliterated (``Wichard`` -> ``Vitsard``) and the others are copied;
- multi-word entities reordered: the name first, the translated (capitalised) head
  after it (``Bank of Tarvia`` / ``Tarvia Bank`` -> ``Tarvia Banko``, ``North Kavia`` ->
  ``Kavia Nordu``, ``the Olmec Cup`` -> ``Olmek Kupa``), nationality adjectives get
  the target's adjective ending (``Kavian`` -> ``Kaviase``, ``Bernish`` -> ``Bernese``).

Gold spans. ``Pair.tgt_spans[i]`` is the target span of entity ``i`` (index-aligned
with ``src_spans``) and covers the entity's own characters: the respelled name words
(and translated head), **without** the glued case suffix or its epenthetic ``e``
(``Anna Bergeka`` -> span over ``Anna Berg``). ``Pair.tgt_word_spans[i]`` is that span
widened to whole whitespace-delimited words (``Anna Bergeka``). Projection methods
that place markers only at word boundaries (Codec, brackets parsed from a translation,
word alignment) can reach the word spans and never the strict ones, so the projection
benchmark scores exact match against ``tgt_word_spans`` (equivalently: predicted and
gold spans both widened to whole words, ``word_span``), and the target NER dataset
is word-level (whitespace tokens, IOB2) anyway. ``tgt_spans`` stays for
character-level analysis. Source spans always fall on word boundaries.

Markers. ``marked(pair, i)`` puts ``[ `` and `` ]`` (space separated) around entity
``i``: around its source tokens and around its target *word* span (suffix inside),
which is what the reference model is trained to output. ``marked_all(pair)`` marks
every entity at once, as the marker method (EasyProject) translates. With the shipped
SentencePiece model the markers are the pieces ``▁[`` and ``▁]``, and a marked
sentence tokenizes as the unmarked one with those two pieces inserted.

Splits. Name words are drawn from one procedurally generated pool; a fixed fifth of
it (by CRC32) is held out. ``split="train"`` never uses a held-out name word;
``"test"`` and ``"dev"`` put at least one held-out name word in every sentence, so no
test sentence can occur in training data whatever the seeds; different splits and
seeds use independent random streams. ``split="demo"`` is like ``"test"``.

Everything is deterministic: ``generate(n, seed, split)`` returns the same pairs
on every machine and Python version (``random.Random`` with a string seed, no
``hash()``).
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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


# -- data model ---------------------------------------------------------------------
@dataclass
class Pair:
    src_tokens: list[str]
    src_tags: list[str]  # IOB2
    src_text: str  # " ".join(src_tokens)
    src_spans: list[tuple[int, int, str]]  # char offsets into src_text
    tgt_text: str
    tgt_spans: list[tuple[int, int, str]]  # strict: the entity without glued suffix; index-aligned
    tgt_word_spans: list[tuple[int, int, str]]  # tgt_spans widened to whole words
    split: str = "train"
    held_out: bool = False  # uses at least one held-out name word

    @property
    def tgt_tokens(self) -> list[str]:
        return self.tgt_text.split(" ")

    @property
    def tgt_tags(self) -> list[str]:
        return tags_from_spans(self.tgt_text, self.tgt_word_spans)

    def to_dict(self) -> dict:
        return {"src_text": self.src_text, "src_spans": [list(s) for s in self.src_spans],
                "tgt_text": self.tgt_text, "tgt_spans": [list(s) for s in self.tgt_spans],
                "tgt_word_spans": [list(s) for s in self.tgt_word_spans],
                "src_tokens": self.src_tokens, "src_tags": self.src_tags, "split": self.split}


# Internal phrase representation: a list of words, each a list of segments
# (text, entity index or None). Suffix segments carry None.
_Seg = tuple[str, int | None]


@dataclass
class _Ent:
    label: str
    src: list[str]  # source tokens
    tgt: list[str]  # target words (before any case suffix)


@dataclass
class _Builder:
    rng: random.Random
    names: Sequence[str]
    held: Sequence[str]
    p_held: float
    ents: list[_Ent] = field(default_factory=list)
    used_held: bool = False

    # names -----------------------------------------------------------------
    def name(self) -> str:
        if self.held and self.rng.random() < self.p_held:
            self.used_held = True
            return self.rng.choice(self.held)
        return self.rng.choice(self.names)

    def entity(self, label: str) -> int:
        r = self.rng.random()
        if label == "PER":
            first = self.name()
            src = [first] if r < 0.35 else [first, self.name()]
            tgt = [transliterate(w) for w in src]
        elif label == "LOC":
            name = self.name()
            if r < 0.6:
                src, tgt = [name], [transliterate(name)]
            elif r < 0.8:
                head = self.rng.choice(LOC_PREFIX_HEADS)
                src, tgt = [head, name], [transliterate(name), LEX[head.lower()].capitalize()]
            else:
                head = self.rng.choice(LOC_SUFFIX_HEADS)
                src, tgt = [name, head], [transliterate(name), LEX[head.lower()].capitalize()]
        elif label == "ORG":
            name = self.name()
            if r < 0.15:  # two-name organisations: "Kavo Brand Group"
                name2 = self.name()
                head = self.rng.choice(ORG_HEADS)
                src = [name, name2, head]
                tgt = [transliterate(name), transliterate(name2), LEX[head.lower()].capitalize()]
            elif r < 0.45:
                head = self.rng.choice(ORG_OF_HEADS)
                src, tgt = [head, "of", name], [transliterate(name), LEX[head.lower()].capitalize()]
            else:
                head = self.rng.choice(ORG_HEADS)
                src, tgt = [name, head], [transliterate(name), LEX[head.lower()].capitalize()]
        elif label == "MISC":  # events; nationality adjectives are made in noun_phrase
            name = self.name()
            head = self.rng.choice(MISC_EVENT_HEADS)
            src, tgt = [name, head], [transliterate(name), LEX[head.lower()].capitalize()]
        else:
            raise ValueError(label)
        self.ents.append(_Ent(label, src, tgt))
        return len(self.ents) - 1

    # phrases: (source tokens with entity ids, target words as segment lists) -----
    def ent_phrase(self, label: str, with_article: bool = False):
        i = self.entity(label)
        e = self.ents[i]
        src = ([("the", None)] if with_article else []) + [(t, i) for t in e.src]
        tgt = [[(w, i)] for w in e.tgt]
        return src, tgt

    def noun_phrase(self):
        noun = self.rng.choice(NOUNS)
        art = self.rng.choice(("the", "the", "a"))
        src: list[tuple[str, int | None]] = [(art, None)]
        tgt: list[list[_Seg]] = [[(LEX[noun], None)]]
        r = self.rng.random()
        adj = self.rng.choice(ADJECTIVES) if r < 0.35 else None
        if adj:
            src.append((adj, None))
        if 0.35 <= r < 0.55:  # "the Kavian minister": a MISC nationality adjective
            name = self.name()
            i = len(self.ents)
            # "Kavia" -> "Kavian"/"Kaviase", "Bern" -> "Bernish"/"Bernese": one source form per name
            vowel_end = name[-1] in VOWELS
            self.ents.append(_Ent("MISC", [name + ("n" if vowel_end else "ish")],
                                  [transliterate(name) + ("se" if vowel_end else "ese")]))
            src[0] = ("the", None)
            src.append((self.ents[i].src[0], i))
            tgt.append([(self.ents[i].tgt[0], i)])
        src.append((noun, None))
        if adj:
            tgt.append([(LEX[adj], None)])
        return src, tgt

    def argument(self, weights: dict[str, float]):
        kind = self.rng.choices(list(weights), weights=list(weights.values()))[0]
        if kind == "NP":
            return self.noun_phrase()
        return self.ent_phrase(kind, with_article=(kind == "MISC"))


def _glue(tgt: list[list[_Seg]], case: str) -> list[list[_Seg]]:
    last = "".join(s for s, _ in tgt[-1])
    return tgt[:-1] + [tgt[-1] + [(case_suffix(last, case), None)]]


def _clause(b: _Builder, depth: int = 0):
    """One clause: (source tokens, target words). English SVO, target SOV."""
    rng = b.rng
    subj_s, subj_t = b.argument({"PER": 0.45, "ORG": 0.2, "NP": 0.35})
    tense = rng.choice(tuple(TENSES))
    if depth == 0 and rng.random() < 0.15:  # "X said that <clause>" -> "X-ka <clause> ke sano-ta"
        inner_s, inner_t = _clause(b, depth + 1)
        verb_s = {"past": ["said"], "present": ["says"], "future": ["will", "say"]}[tense]
        src = subj_s + [(w, None) for w in verb_s] + [("that", None)] + inner_s
        tgt = _glue(subj_t, "nom") + inner_t + [[(COMPLEMENTIZER, None)]] + [[(LEX[SAY[0]] + TENSES[tense], None)]]
        return src, tgt
    verb = rng.choice(VERBS)
    obj_s, obj_t = b.argument({"PER": 0.2, "ORG": 0.15, "LOC": 0.15, "NP": 0.5})
    pps_s, pps_t = [], []
    for _ in range(rng.choice((0, 1, 1, 2))):
        prep = rng.choice(PREPOSITIONS)
        if prep in ("in", "at", "from", "to", "near"):
            w = {"LOC": 0.7, "NP": 0.3}
        elif prep == "with":
            w = {"PER": 0.6, "NP": 0.4}
        elif prep in ("during", "about"):
            w = {"MISC": 0.6, "NP": 0.4}
        else:  # for
            w = {"ORG": 0.4, "PER": 0.3, "NP": 0.3}
        np_s, np_t = b.argument(w)
        pps_s += [(prep, None)] + np_s
        pps_t += _glue(np_t, PREP_CASE[prep]) if prep in PREP_CASE else np_t + [[(POSTPOSITIONS[prep], None)]]
    verb_s = {"past": [verb[2]], "present": [verb[1]], "future": ["will", verb[0]]}[tense]
    src = subj_s + [(w, None) for w in verb_s] + obj_s + pps_s
    tgt = _glue(subj_t, "nom") + pps_t + _glue(obj_t, "acc") + [[(LEX[verb[0]] + TENSES[tense], None)]]
    return src, tgt


def _render(b: _Builder, src: list[tuple[str, int | None]], tgt: list[list[_Seg]], split: str) -> Pair:
    src = src + [(PUNCT, None)]
    tgt = tgt + [[(PUNCT, None)]]
    if src[0][1] is None:  # sentence-initial capital on a common word
        src[0] = (src[0][0].capitalize(), None)
    n = len(b.ents)
    # source text, spans and IOB2 tags
    tokens, tags, s_start, s_end = [], [], [None] * n, [None] * n
    pos = 0
    for tok, i in src:
        if tokens:
            pos += 1
        if i is not None:
            tags.append(("I-" if tokens and src[len(tokens) - 1][1] == i else "B-") + b.ents[i].label)
            s_start[i] = pos if s_start[i] is None else s_start[i]
            s_end[i] = pos + len(tok)
        else:
            tags.append("O")
        tokens.append(tok)
        pos += len(tok)
    # target text: entity characters, and whole words containing them
    parts, t_start, t_end, w_start, w_end = [], [None] * n, [None] * n, [None] * n, [None] * n
    pos = 0
    for k, word in enumerate(tgt):
        if k:
            parts.append(" ")
            pos += 1
        word_start = pos
        for seg, i in word:
            if i is not None:
                t_start[i] = pos if t_start[i] is None else t_start[i]
                t_end[i] = pos + len(seg)
            parts.append(seg)
            pos += len(seg)
        for i in {i for _, i in word if i is not None}:
            w_start[i] = word_start if w_start[i] is None else w_start[i]
            w_end[i] = pos
    src_spans = [(s_start[i], s_end[i], b.ents[i].label) for i in range(n)]
    order = sorted(range(n), key=lambda i: s_start[i])  # entity index = source order
    return Pair(src_tokens=tokens, src_tags=tags, src_text=" ".join(tokens),
                src_spans=[src_spans[i] for i in order],
                tgt_text="".join(parts),
                tgt_spans=[(t_start[i], t_end[i], b.ents[i].label) for i in order],
                tgt_word_spans=[(w_start[i], w_end[i], b.ents[i].label) for i in order],
                split=split, held_out=b.used_held)


def generate(n: int, seed: int = 0, split: str = "train") -> list[Pair]:
    """``n`` pairs of ``split``; the same arguments give the same pairs."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"xlcorpus-synthetic:{split}:{seed}")
    train = split == "train"
    out: list[Pair] = []
    while len(out) < n:
        b = _Builder(rng, TRAIN_NAMES, [] if train else HELD_OUT_NAMES, 0.0 if train else 0.5)
        src, tgt = _clause(b)
        if not train and not b.used_held:
            continue  # every held-out sentence carries a held-out name word: redraw
        out.append(_render(b, src, tgt, split))
    return out


# -- spans and markers ----------------------------------------------------------------
def word_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` widened to whole space-delimited words of ``text``."""
    s = text.rfind(" ", 0, start) + 1
    e = text.find(" ", end)
    return s, len(text) if e < 0 else e


def tags_from_spans(text: str, spans: Iterable[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags of the space-delimited tokens of ``text`` (spans widened to words)."""
    starts, pos = [], 0
    for tok in text.split(" "):
        starts.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    tags = ["O"] * len(starts)
    for s, e, label in spans:
        inside = [k for k, (a, z) in enumerate(starts) if a < e and z > s]
        for j, k in enumerate(inside):
            tags[k] = ("B-" if j == 0 else "I-") + label
    return tags


def _insert_markers(text: str, start: int, end: int) -> str:
    return f"{text[:start]}{OPEN} {text[start:end]} {CLOSE}{text[end:]}"


def marked(pair: Pair, entity_index: int) -> tuple[str, str]:
    """Source and target with ``[ ... ]`` around entity ``entity_index`` (target: word span)."""
    s, e, _ = pair.src_spans[entity_index]
    ts, te, _ = pair.tgt_word_spans[entity_index]
    return _insert_markers(pair.src_text, s, e), _insert_markers(pair.tgt_text, ts, te)


def marked_all(pair: Pair) -> tuple[str, str]:
    """Source and target with ``[ ... ]`` around every entity (target: word spans).

    What the marker method (EasyProject) feeds the model: all entities marked at once.
    Entities keep their own bracket pair even when adjacent; target word spans never
    overlap (one entity per target word), so the brackets are never nested.
    """
    def mark(text: str, spans) -> str:
        for s, e, _ in sorted(spans, key=lambda x: x[0], reverse=True):  # right to left: offsets stay valid
            text = _insert_markers(text, s, e)
        return text

    return mark(pair.src_text, pair.src_spans), mark(pair.tgt_text, pair.tgt_word_spans)


def parse_markers(text: str) -> tuple[str, list[tuple[int, int]]]:
    """Inverse of the marking: text without ``[ `` / `` ]`` and the marked char spans.

    Unbalanced or nested markers raise ``ValueError``.
    """
    out, spans, pos, open_at = [], [], 0, None
    toks = text.split(" ")
    words: list[str] = []
    for tok in toks:
        if tok == OPEN:
            if open_at is not None:
                raise ValueError(f"nested {OPEN!r} in {text!r}")
            open_at = len(words)
        elif tok == CLOSE:
            if open_at is None:
                raise ValueError(f"{CLOSE!r} without {OPEN!r} in {text!r}")
            spans.append((open_at, len(words)))
            open_at = None
        else:
            words.append(tok)
    if open_at is not None:
        raise ValueError(f"unclosed {OPEN!r} in {text!r}")
    starts = []
    for w in words:
        starts.append(pos)
        out.append(w)
        pos += len(w) + 1
    plain = " ".join(out)
    char_spans = [(starts[a], starts[z - 1] + len(words[z - 1])) for a, z in spans if z > a]
    return plain, char_spans


# -- NER files --------------------------------------------------------------------------
def ner_examples(pairs: Iterable[Pair], side: str = "src") -> list[dict]:
    """``{"text", "spans": [{"start", "end", "label"}]}`` rows of one side (target: word spans)."""
    if side not in ("src", "tgt"):
        raise ValueError("side must be 'src' or 'tgt'")
    rows = []
    for p in pairs:
        text, spans = (p.src_text, p.src_spans) if side == "src" else (p.tgt_text, p.tgt_word_spans)
        rows.append({"text": text, "spans": [{"start": s, "end": e, "label": lab} for s, e, lab in spans]})
    return rows


def write_jsonl(pairs: Iterable[Pair], path: str | Path, side: str = "src", with_target: bool = False) -> Path:
    """One NER example per line; ``with_target`` adds the gold translation and its spans
    (``tgt_text``, ``tgt_spans`` strict, ``tgt_word_spans``) for evaluation."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs = list(pairs)
    with path.open("w", encoding="utf-8") as f:
        for p, row in zip(pairs, ner_examples(pairs, side)):
            if with_target:
                row["tgt_text"] = p.tgt_text
                row["tgt_spans"] = [{"start": s, "end": e, "label": lab} for s, e, lab in p.tgt_spans]
                row["tgt_word_spans"] = [{"start": s, "end": e, "label": lab} for s, e, lab in p.tgt_word_spans]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_conll(pairs: Iterable[Pair], path: str | Path, side: str = "src", docstart: bool = True) -> Path:
    """CoNLL/IOB2: ``token TAG`` per line, blank line between sentences."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        if docstart:
            f.write("-DOCSTART- O\n\n")
        for p in pairs:
            toks, tags = (p.src_tokens, p.src_tags) if side == "src" else (p.tgt_tokens, p.tgt_tags)
            for tok, tag in zip(toks, tags):
                f.write(f"{tok} {tag}\n")
            f.write("\n")
    return path
