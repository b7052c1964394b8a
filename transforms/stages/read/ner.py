"""NER readers: CoNLL/IOB2, JSONL with character spans, and Hugging Face datasets
(``tokens`` + ``ner_tags``) -> NER_SCHEMA RecordBatches.

Every record becomes either a row (``text``, its words in ``tokens`` and labelled
character ``spans`` on ``text``) or a dead letter naming the record, the field and
what is wrong: I- tags without a B- (or of another type), spans out of range,
overlapping spans, missing fields. CoNLL and HF records are words: ``text`` is the
words joined by single spaces, so spans are character offsets into that.

Core: ``read_conll``, ``read_jsonl``, ``read_hf`` (plain Python over one input, yield
(DOCS | DEAD_LETTER, batch)); ``ReadNer`` is the Beam transform.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import apache_beam as beam
import orjson
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from xlcorpus.schemas import DEAD_LETTER_SCHEMA, NER_SCHEMA
from xlcorpus.transforms.stages.read.documents import decompressed, detect_format, stable_id
from xlcorpus.transforms.text.tokens import tokenize

log = logging.getLogger(__name__)
STAGE = "read_ner"
DOCS, DEAD_LETTER, FILE_STATS = "docs", "dead_letter", "file_stats"
FORMATS = ("auto", "conll", "jsonl", "hf")


class NerInputError(ValueError):
    """A record that is not valid NER data; the message names the field."""


@dataclass(frozen=True)
class NerReaderOptions:
    format: str = "auto"  # conll | jsonl | hf | auto (by name: .conll/.iob/.txt/.tsv, .jsonl, a directory)
    text_field: str = "text"
    spans_field: str = "spans"
    id_field: str = "id"
    batch_size: int = 1024
    require_spans: bool = True  # False: JSONL records without spans are unlabelled text (translate-test)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"ner input format must be one of {FORMATS}, got {self.format!r}")


# --- validation (pure) -------------------------------------------------------------
def iob2_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Word spans ``(first, last + 1, label)`` of an IOB2 tag sequence; raises
    NerInputError on an I- that does not continue a B-/I- of the same type."""
    spans: list[tuple[int, int, str]] = []
    current: list | None = None
    for k, tag in enumerate(tags):
        if tag == "O":
            current = None
            continue
        prefix, sep, label = tag.partition("-")
        if not sep or prefix not in ("B", "I") or not label:
            raise NerInputError(f"tag {k} {tag!r} is not O, B-<type> or I-<type>")
        if prefix == "B":
            current = [k, k + 1, label]
            spans.append(current)  # type: ignore[arg-type]
        elif current is None:
            raise NerInputError(f"tag {k} {tag!r}: I- without a preceding B-{label}")
        elif current[2] != label:
            raise NerInputError(f"tag {k} {tag!r}: I-{label} continues a {current[2]} entity")
        else:
            current[1] = k + 1
    return [tuple(s) for s in spans]  # type: ignore[misc]


def words_to_text(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Words joined by one space, and each word's character offsets."""
    offsets, pos = [], 0
    for w in words:
        offsets.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), offsets


def check_spans(text: str, spans: Iterable, field: str = "spans") -> list[dict]:
    """Spans as ``{start, end, label}`` sorted by start; raises NerInputError naming
    ``field`` and the span for malformed, out-of-range or overlapping spans."""
    out = []
    for k, span in enumerate(spans):
        if not isinstance(span, dict):
            raise NerInputError(f"{field}[{k}] is {type(span).__name__}, expected an object")
        start, end, label = span.get("start"), span.get("end"), span.get("label")
        if type(start) is not int or type(end) is not int:
            raise NerInputError(f"{field}[{k}]: start and end must be integers, got {start!r}, {end!r}")
        if not isinstance(label, str) or not label:
            raise NerInputError(f"{field}[{k}]: label must be a non-empty string, got {label!r}")
        if not 0 <= start < end <= len(text):
            raise NerInputError(f"{field}[{k}] [{start}, {end}) is out of range for a text of {len(text)} "
                                f"characters")
        out.append({"start": start, "end": end, "label": label})
    out.sort(key=lambda s: (s["start"], s["end"]))
    for a, b in itertools.pairwise(out):
        if b["start"] < a["end"]:
            raise NerInputError(f"{field}: [{a['start']}, {a['end']}) {a['label']} overlaps "
                                f"[{b['start']}, {b['end']}) {b['label']}")
    return out


def word_record(words: Sequence[str], tags: Sequence[str]) -> tuple[str, list[str], list[dict]]:
    """(text, tokens, spans) of a tagged word sequence."""
    if len(words) != len(tags):
        raise NerInputError(f"ner_tags: {len(tags)} tags for {len(words)} tokens")
    for k, w in enumerate(words):
        if not w or any(c.isspace() for c in w):
            raise NerInputError(f"tokens[{k}] {w!r} is empty or contains whitespace")
    text, offsets = words_to_text(words)
    spans = [{"start": offsets[a][0], "end": offsets[b - 1][1], "label": label}
             for a, b, label in iob2_spans(tags)]
    return text, list(words), spans


def text_words(text: str) -> list[str]:
    """The non-space tokens of a text (JSONL records carry no tokens of their own)."""
    return [t.text for t in tokenize(text) if t.kind != "space"]


# --- batches -----------------------------------------------------------------------
class _Builder:
    def __init__(self, source: str, batch_size: int):
        self.source, self.batch_size = source, batch_size
        self.rows: list[dict] = []
        self.dead: list[dict] = []
        self.docs = self.dead_count = 0

    def add(self, rid: str, text: str, tokens: list[str], spans: list[dict], line: int, offset: int,
            meta: str | None = None) -> pa.RecordBatch | None:
        self.rows.append({"id": rid, "text": text, "source": self.source, "line": line, "offset": offset,
                          "meta": meta, "tokens": tokens, "spans": spans})
        return self.flush() if len(self.rows) >= self.batch_size else None

    def reject(self, reason: str, error: str, line: int | None, offset: int | None, raw: bytes,
               rid: str | None = None) -> None:
        self.dead_count += 1
        self.dead.append({"stage": STAGE, "reason": reason,
                          "error": f"{self.source}:{line}: id={rid!r}: {error}", "source": self.source,
                          "line": line, "offset": offset, "id": rid, "raw": raw})

    def flush(self) -> pa.RecordBatch | None:
        if not self.rows:
            return None
        batch = pa.RecordBatch.from_pylist(self.rows, schema=NER_SCHEMA)
        self.docs += len(self.rows)
        self.rows = []
        return batch

    def flush_dead(self) -> pa.RecordBatch | None:
        if not self.dead:
            return None
        batch = pa.RecordBatch.from_pylist(self.dead, schema=DEAD_LETTER_SCHEMA)
        self.dead = []
        return batch

    def drain(self) -> Iterator[tuple[str, pa.RecordBatch]]:
        for tag, batch in ((DOCS, self.flush()), (DEAD_LETTER, self.flush_dead())):
            if batch is not None:
                yield tag, batch


def read_conll(f: BinaryIO, source: str, opts: NerReaderOptions = NerReaderOptions()
               ) -> Iterator[tuple[str, pa.RecordBatch]]:
    """One token per line (tag in the last column, whitespace-separated), blank lines
    between sentences, ``-DOCSTART-`` lines skipped. A sentence's line is its first."""
    out = _Builder(source, opts.batch_size)
    words: list[str] = []
    tags: list[str] = []
    raw: list[bytes] = []
    first = first_offset = 0
    number = 0
    problem: str | None = None

    def finish():
        nonlocal words, tags, raw, problem, number
        if words or problem:
            number += 1
            rid = stable_id(source, first)
            blob = b"\n".join(raw)
            if problem:
                out.reject("invalid_conll", problem, first, first_offset, blob, rid)
            else:
                try:
                    text, tokens, spans = word_record(words, tags)
                    batch = out.add(rid, text, tokens, spans, first, first_offset)
                    if batch is not None:
                        yield DOCS, batch
                except NerInputError as e:
                    out.reject("inconsistent_tags", f"sentence {number}: field 'ner_tags': {e}", first,
                               first_offset, blob, rid)
        words, tags, raw, problem = [], [], [], None

    offset = 0
    for lineno, line in enumerate(f, 1):
        start, offset = offset, offset + len(line)
        stripped = line.rstrip(b"\r\n")
        try:
            decoded = stripped.decode("utf-8")
        except UnicodeDecodeError as e:
            decoded, problem = "", problem or f"line {lineno}: invalid UTF-8 at byte {e.start}"
        cols = decoded.split()
        if not cols and not (problem and stripped.strip()):
            yield from finish()
            continue
        if cols and cols[0] == "-DOCSTART-":
            yield from finish()
            continue
        if not words and not raw:
            first, first_offset = lineno, start
        raw.append(stripped)
        if len(cols) < 2 and not problem:
            problem = f"line {lineno}: field 'ner_tags': expected a token and a tag, got {decoded!r}"
        elif cols:
            words.append(cols[0])
            tags.append(cols[-1])
        if len(out.dead) >= out.batch_size:
            yield DEAD_LETTER, out.flush_dead()
    yield from finish()
    yield from out.drain()


def read_jsonl(f: BinaryIO, source: str, opts: NerReaderOptions = NerReaderOptions()
               ) -> Iterator[tuple[str, pa.RecordBatch]]:
    """One JSON object per line with ``text`` and ``spans: [{start, end, label}]``."""
    out = _Builder(source, opts.batch_size)
    offset = 0
    for lineno, line in enumerate(f, 1):
        start, offset = offset, offset + len(line)
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            out.reject("invalid_json", f"invalid JSON: {e}", lineno, start, line)
            continue
        if not isinstance(record, dict):
            out.reject("not_an_object", f"expected a JSON object, got {type(record).__name__}", lineno, start, line)
            continue
        rid = record.pop(opts.id_field, None)
        rid = stable_id(source, lineno) if rid is None else str(rid)
        text = record.pop(opts.text_field, None)
        if not isinstance(text, str):
            out.reject("missing_text", f"field {opts.text_field!r} is missing or not a string", lineno, start,
                       line, rid)
            continue
        spans = record.pop(opts.spans_field, None)
        if spans is None and not opts.require_spans:
            spans = []
        if not isinstance(spans, list):
            out.reject("invalid_spans", f"field {opts.spans_field!r} is missing or not a list", lineno, start,
                       line, rid)
            continue
        try:
            checked = check_spans(text, spans, opts.spans_field)
        except NerInputError as e:
            out.reject("invalid_spans", f"field {opts.spans_field!r}: {e}", lineno, start, line, rid)
            continue
        meta = orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode() if record else None
        batch = out.add(rid, text, text_words(text), checked, lineno, start, meta)
        if batch is not None:
            yield DOCS, batch
        if len(out.dead) >= out.batch_size:
            yield DEAD_LETTER, out.flush_dead()
    yield from out.drain()


def hf_label_names(ds) -> list[str]:
    """The ClassLabel names of a dataset's ``ner_tags`` (Sequence(ClassLabel))."""
    feature = ds.features.get("ner_tags")
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    if not names:
        raise NerInputError("field 'ner_tags' is not a Sequence(ClassLabel) with label names")
    return list(names)


def read_hf(path: str, opts: NerReaderOptions = NerReaderOptions()) -> Iterator[tuple[str, pa.RecordBatch]]:
    """A ``save_to_disk`` Dataset (or every split of a DatasetDict, source ``path/split``)."""
    import datasets

    loaded = datasets.load_from_disk(path)
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    for split, ds in parts:
        source = f"{path.rstrip('/')}/{split}" if split else path
        yield from _read_hf_split(ds, source, opts)


def _read_hf_split(ds, source: str, opts: NerReaderOptions) -> Iterator[tuple[str, pa.RecordBatch]]:
    out = _Builder(source, opts.batch_size)
    names = hf_label_names(ds)
    has_id = opts.id_field in ds.column_names
    for row, record in enumerate(ds, 1):
        raw = orjson.dumps(record, default=str)
        rid = str(record[opts.id_field]) if has_id and record[opts.id_field] is not None else stable_id(source, row)
        try:
            words = record.get("tokens")
            ids = record.get("ner_tags")
            if not isinstance(words, list) or not isinstance(ids, list):
                raise NerInputError("fields 'tokens' and 'ner_tags' must be lists")
            bad = [t for t in ids if not isinstance(t, int) or not 0 <= t < len(names)]
            if bad:
                raise NerInputError(f"field 'ner_tags': ids {bad[:3]} not in 0..{len(names) - 1}")
            text, tokens, spans = word_record(words, [names[t] for t in ids])
        except NerInputError as e:
            out.reject("inconsistent_tags", f"row {row}: {e}", row, None, raw, rid)
            continue
        batch = out.add(rid, text, tokens, spans, row, -1)
        if batch is not None:
            yield DOCS, batch
    yield from out.drain()


def detect_ner_format(path: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    if os.path.isdir(path) or path.rstrip("/").endswith(("dataset_dict.json", "dataset_info.json")):
        return "hf"
    lower = path.lower()
    for ext in (".gz", ".bz2", ".zst", ".zstd"):
        lower = lower.removesuffix(ext)
    if lower.endswith((".conll", ".iob", ".iob2", ".bio", ".tsv", ".txt")):
        return "conll"
    if lower.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise ValueError(f"{path}: cannot tell the NER format from the name; pass format conll, jsonl or hf")


def read_ner(path: str, opts: NerReaderOptions = NerReaderOptions(), stats: dict | None = None
             ) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Any supported input -> (DOCS | DEAD_LETTER, batch). A file that cannot be read
    at all becomes one dead letter naming it. ``stats["lines"]`` counts records."""
    stats = stats if stats is not None else {}
    stats["lines"] = 0
    try:
        fmt = detect_ner_format(path, opts.format)
        if fmt == "hf":
            batches = read_hf(path, opts)
        else:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
                compression = None
                try:
                    compression = detect_format(path)[1]
                except ValueError:
                    pass
                data = decompressed(raw, compression).read()
            reader = read_conll if fmt == "conll" else read_jsonl
            batches = reader(io.BytesIO(data), path, opts)
        for tag, batch in batches:
            stats["lines"] += batch.num_rows
            yield tag, batch
    except Exception as e:  # noqa: BLE001 - unreadable file, not a dataset: the input itself is dead
        log.warning("%s: unreadable: %s", path, e)
        stats["lines"] += 1
        yield DEAD_LETTER, pa.RecordBatch.from_pylist([{
            "stage": STAGE, "reason": "unreadable_file", "error": f"{path}: {type(e).__name__}: {e}",
            "source": path, "line": None, "offset": None, "id": None, "raw": b""}], schema=DEAD_LETTER_SCHEMA)


def label_types(paths: Sequence[str], opts: NerReaderOptions = NerReaderOptions()) -> list[str]:
    """Entity types found in the inputs (sorted), for the ClassLabel names."""
    found: set[str] = set()
    for path in paths:
        for tag, batch in read_ner(path, opts):
            if tag == DOCS:
                for spans in batch.column("spans").to_pylist():
                    found.update(s["label"] for s in spans)
    return sorted(found)


class ReadNerFn(beam.DoFn):
    def __init__(self, opts: NerReaderOptions):
        self.opts = opts

    def process(self, path: str):
        stats: dict = {}
        for tag, batch in read_ner(path, self.opts, stats):
            yield batch if tag == DOCS else beam.pvalue.TaggedOutput(DEAD_LETTER, batch)
        yield beam.pvalue.TaggedOutput(FILE_STATS, {"kind": "input", "source": path, "lines": stats["lines"]})


class ReadNer(beam.PTransform):
    """Paths (files or dataset directories) -> outputs docs / dead_letter / file_stats."""

    def __init__(self, paths: Sequence[str], opts: NerReaderOptions = NerReaderOptions()):
        super().__init__()
        self.paths, self.opts = list(paths), opts

    def expand(self, pbegin):
        return (pbegin
                | "Files" >> beam.Create(self.paths)
                | "Spread" >> beam.Reshuffle()
                | "Parse" >> beam.ParDo(ReadNerFn(self.opts)).with_outputs(DEAD_LETTER, FILE_STATS, main=DOCS))
