"""Readers: JSONL, plain text and Parquet files -> document RecordBatches.

The core (``read_file``) is plain Python over one file object and yields Arrow
batches of documents and of dead letters; the Beam transform (``ReadDocuments``)
only expands globs and fans files out to workers. Every input line ends up either
in a document batch or in a dead-letter batch with its file, line and reason.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

import apache_beam as beam
import orjson
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from xlcorpus.schemas import DEAD_LETTER_SCHEMA, DOCUMENT_SCHEMA
from xlcorpus.transforms.core.progress import tick

log = logging.getLogger(__name__)

STAGE = "read"
DOCS, DEAD_LETTER, FILE_STATS = "docs", "dead_letter", "file_stats"
_COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".txt": "text", ".text": "text",
            ".parquet": "parquet"}

Format = Literal["auto", "jsonl", "text", "parquet"]


@dataclass(frozen=True)
class ReaderOptions:
    format: Format = "auto"
    text_field: str = "text"
    id_field: str = "id"
    batch_size: int = 4096
    max_line_bytes: int = 1 << 20


def detect_format(path: str) -> tuple[str, str | None]:
    """(format, compression) from the file name, e.g. ``a.jsonl.zst`` -> (jsonl, zstd)."""
    name = path.lower()
    compression = None
    for ext, comp in _COMPRESSED.items():
        if name.endswith(ext):
            compression, name = comp, name[: -len(ext)]
            break
    for ext, fmt in _FORMATS.items():
        if name.endswith(ext):
            return fmt, compression
    raise ValueError(f"{path}: cannot tell the format from the file name; set input.format "
                     f"(one of jsonl, text, parquet)")


def decompressed(raw: BinaryIO, compression: str | None) -> BinaryIO:
    if compression is None:
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw)
    if compression == "bz2":
        return bz2.BZ2File(raw)
    import zstandard

    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True))


def stable_id(source: str, line: int) -> str:
    """Id for records without one: stable across runs for the same path and line."""
    return hashlib.blake2b(f"{source}\x00{line}".encode(), digest_size=10).hexdigest()


class _BatchBuilder:
    """Accumulates documents and dead letters; emits RecordBatches of a fixed size."""

    def __init__(self, source: str, batch_size: int):
        self.source, self.batch_size = source, batch_size
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.lines: list[int] = []
        self.offsets: list[int] = []
        self.metas: list[str | None] = []
        self.dead: list[dict] = []
        self.dead_reasons: Counter[str] = Counter()
        self.docs = 0

    def add(self, id_: str, text: str, line: int, offset: int, meta: str | None) -> pa.RecordBatch | None:
        self.ids.append(id_)
        self.texts.append(text)
        self.lines.append(line)
        self.offsets.append(offset)
        self.metas.append(meta)
        return self.flush_docs() if len(self.ids) >= self.batch_size else None

    def reject(self, reason: str, error: str, line: int | None, offset: int | None, raw: bytes,
               id_: str | None = None) -> None:
        self.dead_reasons[reason] += 1
        self.dead.append({"stage": STAGE, "reason": reason, "error": f"{self.source}:{line}: {error}",
                          "source": self.source, "line": line, "offset": offset, "id": id_, "raw": raw})

    def flush_docs(self) -> pa.RecordBatch | None:
        if not self.ids:
            return None
        n = len(self.ids)
        batch = pa.RecordBatch.from_arrays(
            [pa.array(self.ids, pa.string()), pa.array(self.texts, pa.string()),
             pa.array([self.source] * n, pa.string()), pa.array(self.lines, pa.int64()),
             pa.array(self.offsets, pa.int64()), pa.array(self.metas, pa.string())],
            schema=DOCUMENT_SCHEMA,
        )
        self.docs += n
        for column in (self.ids, self.texts, self.lines, self.offsets, self.metas):
            column.clear()  # in place: readers hold these lists' append methods
        return batch

    def flush_dead(self) -> pa.RecordBatch | None:
        if not self.dead:
            return None
        batch = pa.RecordBatch.from_pylist(self.dead, schema=DEAD_LETTER_SCHEMA)
        self.dead.clear()
        return batch


_BLOCK = 1 << 20  # bytes read at a time: lines are split a block at a time, not one readline each


def _lines(f: BinaryIO, max_bytes: int) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, byte offset, line without EOL, too_long). Never holds more than
    ``max_bytes`` of one line in memory (plus one block): the rest of an overlong line
    is skipped."""
    offset, lineno = 0, 0
    keep = max_bytes + 1  # an overlong line's kept prefix: enough for its dead letter
    head, length = b"", 0  # the unfinished line so far: its (kept) start and its full length
    read = f.read
    while True:
        block = read(_BLOCK)
        if not block:
            break
        parts = block.split(b"\n")
        last = parts.pop()
        for line in parts:
            if length:  # the line began in an earlier block
                length += len(line)
                line = (head + line)[:keep] if len(head) < keep else head
                head = b""
            else:
                length = len(line)
            lineno += 1
            start = offset
            offset += length + 1
            if length <= keep:  # the whole line is here
                length = 0
                if line.endswith(b"\r"):
                    line = line[:-1]
                yield lineno, start, line, len(line) > max_bytes
            else:
                length = 0
                yield lineno, start, line, True
        if last:
            if len(head) < keep:
                head = (head + last)[:keep]
            length += len(last)
    if length:  # a last line without a newline
        lineno += 1
        if length <= keep and head.endswith(b"\r"):
            head = head[:-1]
        yield lineno, offset, head, length > keep or len(head) > max_bytes


def _read_lines(f: BinaryIO, source: str, opts: ReaderOptions, jsonl: bool,
                out: _BatchBuilder) -> Iterator[tuple[str, pa.RecordBatch]]:
    text_field, id_field = opts.text_field, opts.id_field
    loads, dumps, JSONDecodeError = orjson.loads, orjson.dumps, orjson.JSONDecodeError
    # the builder's columns, appended to here without a call per row (``out.add``)
    ids, dead, batch_size = out.ids, out.dead, out.batch_size
    add_id, add_text, add_line, add_offset, add_meta = (
        out.ids.append, out.texts.append, out.lines.append, out.offsets.append, out.metas.append)
    for lineno, offset, line, too_long in _lines(f, opts.max_line_bytes):
        if len(dead) >= batch_size:  # a file of garbage must not pile up in memory
            yield DEAD_LETTER, out.flush_dead()
        if too_long:
            out.reject("line_too_long", f"line longer than max_line_bytes={opts.max_line_bytes}",
                       lineno, offset, line[: opts.max_line_bytes])
            continue
        if not jsonl:
            if NUL in line:
                out.reject("nul_byte", f"NUL byte at byte {line.index(NUL)}", lineno, offset, line)
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                out.reject("invalid_utf8", f"invalid UTF-8 at byte {e.start}: {e.reason}", lineno, offset, line)
                continue
            batch = out.add(stable_id(source, lineno), text, lineno, offset, None)
            if batch is not None:
                yield DOCS, batch
            continue
        # Fast path: orjson validates UTF-8 and rejects raw control characters (NUL
        # included) itself; the cause is worked out only for lines that fail.
        try:
            record = loads(line)
        except JSONDecodeError as e:
            out.reject(*_why_not_json(line, e), lineno, offset, line)
            continue
        if type(record) is not dict:
            out.reject("not_an_object", f"expected a JSON object, got {type(record).__name__}",
                       lineno, offset, line)
            continue
        doc = record.pop(text_field, _MISSING)
        rid = record.pop(id_field, None)
        known_id = rid if type(rid) is str else str(rid) if type(rid) is int else None  # named in dead letters
        if type(doc) is not str:
            if doc is _MISSING:
                out.reject("missing_text", f"field {text_field!r} is missing", lineno, offset, line, known_id)
            else:
                out.reject("text_not_string", f"field {text_field!r} is {json_type(doc)}, expected string",
                           lineno, offset, line, known_id)
            continue
        if "\x00" in doc:
            out.reject("nul_byte", f"field {text_field!r} contains a NUL character", lineno, offset, line, known_id)
            continue
        if type(rid) is not str:
            if rid is None:
                rid = stable_id(source, lineno)
            elif type(rid) is int:
                rid = str(rid)
            else:
                out.reject("invalid_id", f"field {id_field!r} is {json_type(rid)}, expected string or integer",
                           lineno, offset, line)
                continue
        add_id(rid)
        add_text(doc)
        add_line(lineno)
        add_offset(offset)
        add_meta(dumps(record, option=orjson.OPT_SORT_KEYS).decode() if record else None)
        if len(ids) >= batch_size:
            yield DOCS, out.flush_docs()


_JSON_TYPES = {type(None): "null", bool: "boolean", int: "number", float: "number", list: "array", dict: "object",
               str: "string"}


def json_type(value) -> str:
    """The JSON name of a parsed value's type (``null``, not ``NoneType``)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _why_not_json(line: bytes, error: Exception) -> tuple[str, str]:
    if not line.strip():
        return "blank_line", "blank line in a JSONL file"
    if NUL in line:
        return "nul_byte", f"NUL byte at byte {line.index(NUL)}"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        return "invalid_utf8", f"invalid UTF-8 at byte {e.start}: {e.reason}"
    return "invalid_json", f"invalid JSON: {error}"


_MISSING = object()
NUL = b"\x00"


def _read_parquet(f: BinaryIO, source: str, opts: ReaderOptions, out: _BatchBuilder
                  ) -> Iterator[tuple[str, pa.RecordBatch]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f)
    names = set(pf.schema_arrow.names)
    row = 0
    for table_batch in pf.iter_batches(batch_size=opts.batch_size):
        rows = table_batch.to_pylist()
        if len(out.dead) >= out.batch_size:
            yield DEAD_LETTER, out.flush_dead()
        for record in rows:
            row += 1
            raw = orjson.dumps(record, default=str)
            doc = record.pop(opts.text_field, None)
            if opts.text_field not in names or doc is None:
                out.reject("missing_text", f"column {opts.text_field!r} is missing or null", row, None, raw)
                continue
            if type(doc) is not str:
                out.reject("text_not_string", f"column {opts.text_field!r} is {type(doc).__name__}, "
                           "expected string", row, None, raw)
                continue
            if "\x00" in doc:
                out.reject("nul_byte", f"column {opts.text_field!r} contains a NUL character", row, None, raw)
                continue
            if len(doc.encode()) > opts.max_line_bytes:
                out.reject("line_too_long", f"text longer than max_line_bytes={opts.max_line_bytes}",
                           row, None, raw[: opts.max_line_bytes])
                continue
            rid = record.pop(opts.id_field, None)
            rid = stable_id(source, row) if rid is None else str(rid)
            meta = orjson.dumps(record, default=str, option=orjson.OPT_SORT_KEYS).decode() if record else None
            batch = out.add(rid, doc, row, -1, meta)
            if batch is not None:
                yield DOCS, batch


@dataclass
class FileResult:
    source: str
    lines: int = 0
    docs: int = 0
    dead_letter: int = 0


def read_file(f: BinaryIO, source: str, opts: ReaderOptions,
              stats: FileResult | None = None) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Parse one (possibly compressed) file; yields (DOCS | DEAD_LETTER, batch).

    ``stats`` (if given) is filled in as the file is read. A file that cannot be
    opened or decoded at all becomes one dead-letter row naming the file.
    """
    stats = stats if stats is not None else FileResult(source)
    out = _BatchBuilder(source, opts.batch_size)
    try:
        fmt, compression = detect_format(source)
        if opts.format != "auto":
            fmt = opts.format
        stream = decompressed(f, compression)
        if fmt == "parquet":
            batches = _read_parquet(stream, source, opts, out)
        else:
            batches = _read_lines(stream, source, opts, fmt == "jsonl", out)
        for tag, batch in batches:
            stats.docs = out.docs
            yield tag, batch
    except Exception as e:  # corrupt archive, unreadable Parquet: the file itself is dead
        log.warning("%s: unreadable after %d rows: %s", source, out.docs + len(out.ids), e)
        out.reject("unreadable_file", f"{type(e).__name__}: {e}", None, None, b"")
    batch = out.flush_docs()
    if batch is not None:
        yield DOCS, batch
    stats.docs = out.docs
    stats.dead_letter = sum(out.dead_reasons.values())
    stats.lines = stats.docs + stats.dead_letter
    dead = out.flush_dead()
    if dead is not None:
        yield DEAD_LETTER, dead


# --- Beam --------------------------------------------------------------------------
def expand_inputs(patterns: list[str]) -> list[str]:
    """Expand globs on the driver (sorted, de-duplicated) so that a pattern matching
    nothing fails before the pipeline starts, with the pattern in the message."""
    paths: set[str] = set()
    for pattern in patterns:
        found = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
        if not found:
            raise FileNotFoundError(f"input pattern {pattern!r} matches no file")
        paths.update(found)
    return sorted(paths)


PROGRESS_EVERY = 100_000


class ReadFileFn(beam.DoFn):
    """One file path -> document batches, dead letters and the file's line count."""

    def __init__(self, opts: ReaderOptions):
        self.opts = opts
        self.lines = Metrics.counter("xlcorpus.read", "lines")
        self.dead = Metrics.counter("xlcorpus.read", "dead_letter")

    def process(self, path: str):
        stats = FileResult(path)
        next_report = PROGRESS_EVERY
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for tag, batch in read_file(f, path, self.opts, stats):
                tick("read", "read", batch.num_rows)
                yield batch if tag == DOCS else beam.pvalue.TaggedOutput(DEAD_LETTER, batch)
                if stats.docs >= next_report:  # progress on long files
                    log.info("read %s: %d documents so far", path, stats.docs)
                    next_report += PROGRESS_EVERY
        self.lines.inc(stats.lines)
        self.dead.inc(stats.dead_letter)
        log.info("read %s: %d lines, %d documents, %d dead-letter", path, stats.lines, stats.docs,
                 stats.dead_letter)
        yield beam.pvalue.TaggedOutput(FILE_STATS, {"kind": "input", "source": path, "lines": stats.lines})


class ReadDocuments(beam.PTransform):
    """File paths -> PCollection[RecordBatch], with outputs docs / dead_letter / file_stats."""

    def __init__(self, paths: list[str], opts: ReaderOptions):
        super().__init__()
        self.paths, self.opts = paths, opts

    def expand(self, pbegin):
        return (pbegin
                | "Files" >> beam.Create(self.paths)
                | "Spread" >> beam.Reshuffle()
                | "Parse" >> beam.ParDo(ReadFileFn(self.opts)).with_outputs(DEAD_LETTER, FILE_STATS, main=DOCS))
