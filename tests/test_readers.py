"""Reader core: formats, compression, ids, and every kind of bad line -> dead letter."""

from __future__ import annotations

import bz2
import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlcorpus.schemas import DEAD_LETTER_SCHEMA, DOCUMENT_SCHEMA
from xlcorpus.transforms.stages.read.documents import (
    DEAD_LETTER, DOCS, FileResult, ReaderOptions, detect_format, read_file, stable_id,
)


def read_bytes(data: bytes, source: str, **opts) -> tuple[pa.Table, pa.Table, FileResult]:
    stats = FileResult(source)
    docs, dead = [], []
    for tag, batch in read_file(io.BytesIO(data), source, ReaderOptions(**opts), stats):
        (docs if tag == DOCS else dead).append(batch)
    return (pa.Table.from_batches(docs, DOCUMENT_SCHEMA), pa.Table.from_batches(dead, DEAD_LETTER_SCHEMA), stats)


def test_detect_format():
    assert detect_format("a/b.jsonl") == ("jsonl", None)
    assert detect_format("b.JSONL.GZ") == ("jsonl", "gzip")
    assert detect_format("b.txt.zst") == ("text", "zstd")
    assert detect_format("b.txt.bz2") == ("text", "bz2")
    assert detect_format("b.parquet") == ("parquet", None)
    with pytest.raises(ValueError, match="input.format"):
        detect_format("b.csv")


def test_jsonl_fields_ids_and_meta():
    data = (json.dumps({"id": "x1", "text": "hello", "lang_hint": "en", "n": 3}) + "\n"
            + json.dumps({"text": "no id here"}) + "\n"
            + json.dumps({"id": 7, "body": "custom field"}) + "\n").encode()
    docs, dead, stats = read_bytes(data, "f.jsonl")
    assert docs.column("id").to_pylist() == ["x1", stable_id("f.jsonl", 2)]
    assert docs.column("meta").to_pylist() == ['{"lang_hint":"en","n":3}', None]
    assert docs.column("line").to_pylist() == [1, 2]
    assert docs.column("offset").to_pylist() == [0, len(data.split(b"\n")[0]) + 1]
    assert dead.column("reason").to_pylist() == ["missing_text"] and dead.column("line").to_pylist() == [3]
    assert stats.lines == 3 and stats.docs == 2 and stats.dead_letter == 1
    docs, dead, _ = read_bytes(data, "f.jsonl", text_field="body")
    assert docs.column("text").to_pylist() == ["custom field"] and docs.column("id").to_pylist() == ["7"]


def test_stable_id_is_stable_and_distinct():
    assert stable_id("a.jsonl", 1) == stable_id("a.jsonl", 1)
    assert len({stable_id("a.jsonl", 1), stable_id("a.jsonl", 2), stable_id("b.jsonl", 1)}) == 3


BAD_LINES = [
    (b'{"text": "unterminated}', "invalid_json"),
    (b'{"text": "bad \xff\xfe utf8"}', "invalid_utf8"),
    (b'{"text": 42}', "text_not_string"),
    (b'{"body": "x"}', "missing_text"),
    (b'["not", "an", "object"]', "not_an_object"),
    (b'{"text": "nul \\u0000 escaped"}', "nul_byte"),
    (b'{"text": "raw nul \x00 byte"}', "nul_byte"),
    (b"", "blank_line"),
    (b'{"text": "' + b"x" * 200 + b'"}', "line_too_long"),
    (b'{"id": [1], "text": "id is a list"}', "invalid_id"),
]


def test_every_bad_jsonl_line_is_dead_lettered_with_line_and_reason():
    good = b'{"text": "fine"}'
    lines = [good] + [line for line, _ in BAD_LINES] + [good]
    docs, dead, stats = read_bytes(b"\n".join(lines) + b"\n", "bad.jsonl", max_line_bytes=100)
    assert docs.column("line").to_pylist() == [1, len(lines)]
    assert dead.column("line").to_pylist() == list(range(2, len(lines)))
    assert dead.column("reason").to_pylist() == [reason for _, reason in BAD_LINES]
    assert all(e.startswith(f"bad.jsonl:{n}: ") for e, n in zip(dead.column("error").to_pylist(),
                                                                range(2, len(lines))))
    assert dead.column("raw").to_pylist()[0] == BAD_LINES[0][0]
    assert len(dead.column("raw").to_pylist()[8]) == 100  # overlong lines are kept truncated
    assert set(dead.column("stage").to_pylist()) == {"read"}
    assert stats.lines == len(lines)


def test_overlong_line_is_skipped_without_losing_the_next_line():
    data = b'{"text": "' + b"y" * 10_000 + b'"}\n{"text": "after"}\n'
    docs, dead, _ = read_bytes(data, "long.jsonl", max_line_bytes=64)
    assert docs.column("text").to_pylist() == ["after"] and docs.column("line").to_pylist() == [2]
    assert docs.column("offset").to_pylist() == [data.index(b'{"text": "after"}')]
    assert dead.column("reason").to_pylist() == ["line_too_long"]


def test_plain_text_one_document_per_line_crlf_and_no_trailing_newline():
    docs, dead, _ = read_bytes("first line\r\n\nthird ħ line".encode(), "t.txt")
    assert docs.column("text").to_pylist() == ["first line", "", "third ħ line"]
    assert docs.column("line").to_pylist() == [1, 2, 3]
    assert dead.num_rows == 0
    docs, dead, _ = read_bytes(b"ok\n\xc3(\n", "t.txt")
    assert docs.column("text").to_pylist() == ["ok"] and dead.column("reason").to_pylist() == ["invalid_utf8"]


@pytest.mark.parametrize("suffix, compress", [
    (".gz", gzip.compress), (".bz2", bz2.compress), (".zst", zstandard.ZstdCompressor().compress)])
def test_compressed_inputs(suffix, compress):
    raw = "".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(1000)).encode()
    docs, dead, _ = read_bytes(compress(raw), "c.jsonl" + suffix, batch_size=128)
    assert docs.num_rows == 1000 and dead.num_rows == 0
    assert docs.column("text")[999].as_py() == "line 999"


def test_corrupt_archive_becomes_one_dead_letter_row():
    docs, dead, stats = read_bytes(b"this is not gzip", "x.jsonl.gz")
    assert docs.num_rows == 0
    assert dead.column("reason").to_pylist() == ["unreadable_file"] and stats.dead_letter == 1


def test_parquet(tmp_path):
    table = pa.table({"id": ["a", "b", "c", "d"], "text": ["one", None, "three", "nul\x00"], "extra": [1, 2, 3, 4]})
    path = tmp_path / "p.parquet"
    pq.write_table(table, path)
    docs, dead, stats = read_bytes(path.read_bytes(), str(path))
    assert docs.column("id").to_pylist() == ["a", "c"]
    assert docs.column("meta").to_pylist() == ['{"extra":1}', '{"extra":3}']
    assert dead.column("reason").to_pylist() == ["missing_text", "nul_byte"]
    assert dead.column("line").to_pylist() == [2, 4]
    assert stats.lines == 4


def test_batches_have_the_configured_size():
    data = "".join(f"line {i}\n" for i in range(10)).encode()
    stats = FileResult("b.txt")
    sizes = [b.num_rows for tag, b in read_file(io.BytesIO(data), "b.txt", ReaderOptions(batch_size=4), stats)
             if tag == DOCS]
    assert sizes == [4, 4, 2]


# --- property: malformed files never crash the reader and nothing is lost ---------
good_record = st.fixed_dictionaries({"text": st.text(max_size=40)}, optional={"id": st.text(max_size=5)})
bad_line = st.one_of(
    st.binary(max_size=60).filter(lambda b: b"\n" not in b),  # arbitrary bytes, often invalid UTF-8
    st.text(max_size=40).map(lambda s: ("{" + s).replace("\n", " ").encode()),  # truncated JSON
    st.just(b'{"text": 1}'), st.just(b"null"), st.just(b'{"id": "x"}'),
    st.just(b'{"text": "\\u0000"}'), st.just(b"x" * 300),
)
line = st.one_of(good_record.map(lambda r: json.dumps(r).encode()), bad_line)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, max_size=40))
def test_malformed_jsonl_property(lines):
    data = b"\n".join(lines) + (b"\n" if lines else b"")
    docs, dead, stats = read_bytes(data, "prop.jsonl", max_line_bytes=256, batch_size=7)
    # accounting: every line is exactly one document or one dead letter
    assert docs.num_rows + dead.num_rows == len(lines) == stats.lines
    assert sorted(docs.column("line").to_pylist() + dead.column("line").to_pylist()) == list(
        range(1, len(lines) + 1))
    for n, raw in zip(dead.column("line").to_pylist(), dead.column("raw").to_pylist()):
        assert raw == lines[n - 1].removesuffix(b"\r")[:256]
    for n, text in zip(docs.column("line").to_pylist(), docs.column("text").to_pylist()):
        assert json.loads(lines[n - 1])["text"] == text


def test_dead_letters_are_flushed_in_batches_not_held_to_the_end():
    data = b"".join(b"{broken %d\n" % i for i in range(25)) + b'{"text": "fine"}\n'
    tags = [(tag, b.num_rows) for tag, b in read_file(io.BytesIO(data), "g.jsonl", ReaderOptions(batch_size=10))]
    assert tags == [(DEAD_LETTER, 10), (DEAD_LETTER, 10), (DOCS, 1), (DEAD_LETTER, 5)]
