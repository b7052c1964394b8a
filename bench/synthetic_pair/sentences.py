"""Sentence generation of the synthetic pair: ``Pair`` (both sides with gold spans),
clauses built in lockstep on both sides (English SVO, target SOV with glued case
suffixes), and ``generate(n, seed, split)``."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.synthetic_pair.lexicon import (
    ADJECTIVES,
    COMPLEMENTIZER,
    HELD_OUT_NAMES,
    LEX,
    LOC_PREFIX_HEADS,
    LOC_SUFFIX_HEADS,
    MISC_EVENT_HEADS,
    NOUNS,
    ORG_HEADS,
    ORG_OF_HEADS,
    POSTPOSITIONS,
    PREP_CASE,
    PREPOSITIONS,
    PUNCT,
    SAY,
    SPLITS,
    TENSES,
    TRAIN_NAMES,
    VERBS,
    VOWELS,
    case_suffix,
    transliterate,
)
from bench.synthetic_pair.markup import tags_from_spans


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
