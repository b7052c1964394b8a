"""translate-test's source-language tagger, as ``xlcorpus project --predictor
bench.downstream.predictor:tag_source`` loads it: English texts -> entity spans.

The checkpoint and the SentencePiece model come from the environment
(``XLCORPUS_DOWNSTREAM_TAGGER``, ``XLCORPUS_DOWNSTREAM_SPM``), because the CLI takes a
``module:function`` and nothing else; each worker loads them once.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

TAGGER_ENV = "XLCORPUS_DOWNSTREAM_TAGGER"
SPM_ENV = "XLCORPUS_DOWNSTREAM_SPM"


@lru_cache(maxsize=4)
def _load(tagger_path: str, spm_path: str):
    import sentencepiece as spm

    from bench.downstream.tagger import load_tagger

    model, names = load_tagger(Path(tagger_path))
    return model, names, spm.SentencePieceProcessor(model_file=spm_path)


def tag_texts(texts: list[str], tagger_path: str, spm_path: str) -> list[list[dict]]:
    """Whitespace words of each text -> predicted spans ``{start, end, label}``."""
    from bench.downstream.scoring import word_spans
    from bench.downstream.tagger import encode_words, predict_word_tags

    model, names, sp = _load(tagger_path, spm_path)
    words = [t.split() for t in texts]
    enc = encode_words(sp, words, pad_id=model.cfg.pad_id)
    pred = predict_word_tags(model, enc)
    out = []
    for k, (text, ws) in enumerate(zip(texts, words)):
        by_word = pred.get(str(k), {})
        tags = [names[by_word.get(w, 0)] for w in range(len(ws))]
        out.append(word_spans(ws, tags, text))
    return out


def tag_source(texts: list[str]) -> list[list[dict]]:
    """The ``--predictor`` entry point."""
    try:
        return tag_texts(list(texts), os.environ[TAGGER_ENV], os.environ[SPM_ENV])
    except KeyError as e:
        raise RuntimeError(f"set {TAGGER_ENV} and {SPM_ENV} to use this predictor") from e
