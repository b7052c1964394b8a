"""The JSONL/text reader splits lines a block at a time: the same lines, numbers, byte
offsets, overlong flags and kept prefixes as reading one line at a time, wherever
the block boundaries fall."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlcorpus.transforms.stages.read import documents


def lines_one_readline_each(data: bytes, max_bytes: int):
    """Reference: one ``readline`` per line (what the reader did before blocks)."""
    f, offset, lineno = io.BytesIO(data), 0, 0
    while True:
        chunk = f.readline(max_bytes + 2)
        if not chunk:
            return
        lineno += 1
        start, too_long = offset, False
        offset += len(chunk)
        if not chunk.endswith(b"\n") and len(chunk) > max_bytes + 1:
            too_long = True
            while True:
                rest = f.readline(1 << 16)
                offset += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
        line = chunk[:-1] if chunk.endswith(b"\n") else chunk
        if line.endswith(b"\r"):
            line = line[:-1]
        too_long = too_long or len(line) > max_bytes
        # an overlong line's dead letter keeps its first max_bytes bytes
        yield lineno, start, line[:max_bytes] if too_long else line, too_long


def split_in_blocks(data: bytes, max_bytes: int):
    return [(n, o, line[:max_bytes] if long else line, long)
            for n, o, line, long in documents._lines(io.BytesIO(data), max_bytes)]


piece = st.one_of(st.binary(max_size=30), st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n", b"x" * 40]))


@settings(max_examples=400, deadline=None)
@given(st.lists(piece, max_size=30), st.integers(1, 9), st.integers(1, 25))
def test_blocks_give_the_same_lines_as_readline(pieces, block, max_bytes):
    data = b"".join(pieces)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(documents, "_BLOCK", block)
        assert split_in_blocks(data, max_bytes) == list(lines_one_readline_each(data, max_bytes))


def test_a_line_longer_than_many_blocks_is_flagged_once_and_the_next_line_is_whole(monkeypatch):
    monkeypatch.setattr(documents, "_BLOCK", 16)
    data = b"a" * 1000 + b"\r\nshort\r\n" + b"b" * 11
    assert split_in_blocks(data, 10) == [(1, 0, b"a" * 10, True), (2, 1002, b"short", False),
                                         (3, 1009, b"b" * 10, True)]
