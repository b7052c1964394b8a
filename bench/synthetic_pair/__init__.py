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

Modules: ``lexicon`` (word lists, grammar tables, names), ``sentences`` (``Pair``,
``generate``), ``markup`` (spans, markers, NER files); everything is re-exported here.

Everything is deterministic: ``generate(n, seed, split)`` returns the same pairs
on every machine and Python version (``random.Random`` with a string seed, no
``hash()``).
"""

from bench.synthetic_pair.lexicon import (  # noqa: F401
    ADJECTIVES,
    CASES,
    CLOSE,
    COMPLEMENTIZER,
    HEAD_WORDS,
    HELD_OUT_NAMES,
    LABELS,
    LEX,
    LOC_PREFIX_HEADS,
    LOC_SUFFIX_HEADS,
    MISC_EVENT_HEADS,
    MODEL_NAME,
    NAMES,
    NOUNS,
    OPEN,
    ORG_HEADS,
    ORG_OF_HEADS,
    POSTPOSITIONS,
    PREP_CASE,
    PREPOSITIONS,
    PUNCT,
    SAY,
    SPLITS,
    SRC_LANG,
    TENSES,
    TGT_LANG,
    TRAIN_NAMES,
    TRANSLIT,
    VERBS,
    VOWELS,
    case_suffix,
    is_held_out,
    reference_model_dir,
    transliterate,
)
from bench.synthetic_pair.markup import (  # noqa: F401
    marked,
    marked_all,
    ner_examples,
    parse_markers,
    tags_from_spans,
    word_span,
    write_conll,
    write_jsonl,
)
from bench.synthetic_pair.sentences import Pair, generate  # noqa: F401
