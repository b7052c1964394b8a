"""``xlcorpus lexicon build`` and ``xlcorpus lexicon distance`` (and corpus reading for
the other corpus-level commands).

A target-language lexicon is a word-frequency table (Parquet) built from a reference
corpus with the same readers as the pipeline (JSONL, text, Parquet; compressed;
globs). The distance command ranks candidate source languages by how far their
lexicons are from the target's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from xlcorpus.transforms.stages import lexfilter
from xlcorpus.transforms.stages.read import documents as readers


def corpus_texts(patterns: list[str], opts: readers.ReaderOptions, lang: str | None = None,
                 lang_field: str | None = None) -> Iterator[str]:
    """Texts of every readable record; with ``lang_field``, only records whose field
    (one of the record's other JSON fields) equals ``lang``."""
    for path in readers.expand_inputs(patterns):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for tag, batch in readers.read_file(f, path, opts):
                if tag != readers.DOCS:
                    continue
                texts = batch.column("text").to_pylist()
                if lang_field:
                    metas = batch.column("meta").to_pylist()
                    texts = [t for t, m in zip(texts, metas) if m and orjson.loads(m).get(lang_field) == lang]
                yield from texts


def corpus_texts_and_field(patterns: list[str], opts: readers.ReaderOptions, field: str
                           ) -> tuple[list[str], list[str | None]]:
    """All readable texts with one of their records' other fields (None where absent)."""
    texts: list[str] = []
    values: list[str | None] = []
    for path in readers.expand_inputs(patterns):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for tag, batch in readers.read_file(f, path, opts):
                if tag == readers.DOCS:
                    texts.extend(batch.column("text").to_pylist())
                    values.extend(orjson.loads(m).get(field) if m else None for m in batch.column("meta").to_pylist())
    return texts, values


def build(patterns: list[str], lang: str, out: str, *, text_field: str = "text", lang_field: str | None = None,
          lowercase: bool = True, fold_diacritics: bool = False, romanize: bool = False, min_count: int = 1,
          max_words: int | None = None) -> dict:
    texts = corpus_texts(patterns, readers.ReaderOptions(text_field=text_field), lang, lang_field)
    if romanize:  # compare across scripts: the lexicon in uroman's Latin transcription
        from xlcorpus.transforms.stages.transliterate.romanize import Romanizer

        romanizer = Romanizer().load()
        texts = (t for t in romanizer.romanize_batch(list(texts))[0] if t is not None)
    table = lexfilter.build_lexicon(texts, lexfilter.LexiconOptions(
        lowercase=lowercase, fold_diacritics=fold_diacritics, min_count=min_count, max_words=max_words))
    meta = dict(table.schema.metadata or {})
    meta[b"xlcorpus.lexicon.lang"] = lang.encode()
    meta[b"xlcorpus.lexicon.romanized"] = b"true" if romanize else b"false"
    table = table.replace_schema_metadata(meta)
    lexfilter.write_lexicon(table, out)
    counts = table.column("count").to_pylist()
    return {"lang": lang, "out": out, "words": table.num_rows, "tokens": sum(counts),
            "top": table.column("word").to_pylist()[:10]}


def distance(target: str, sources: dict[str, str], out: str | None = None, top_n: int = 2000) -> list[dict]:
    rows = lexfilter.language_distances(lexfilter.read_lexicon(target),
                                        {lang: lexfilter.read_lexicon(p) for lang, p in sources.items()}, top_n)
    if out:
        with FileSystems.create(out) as f:
            f.write(json.dumps({"target": target, "sources": sources, "distances": rows}, indent=2).encode())
    return rows
