"""Rows that leave a stage through the rejected or dead-letter door.

Every stage builds these rows the same way, so the sink and the run report can
count them by stage and reason. No Beam here: the adapter in ``core.beam`` routes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson
import pyarrow as pa

from xlcorpus.schemas import DEAD_LETTER_SCHEMA, REJECTED_SCHEMA

KEPT, REJECTED, DEAD_LETTER = "kept", "rejected", "dead_letter"  # every stage's output tags


def rejected_rows(batch: pa.RecordBatch, rows: Sequence[int] | np.ndarray, reasons: Sequence[str],
                  details: Sequence[dict | None], stage: str) -> pa.RecordBatch:
    """``batch``'s ``rows`` as REJECTED_SCHEMA rows; ``details`` become JSON objects."""
    idx = pa.array(np.asarray(rows, dtype=np.int64))
    docs = batch.select([f.name for f in REJECTED_SCHEMA if f.name in batch.schema.names]).take(idx)
    return pa.RecordBatch.from_arrays(
        list(docs.columns) + [pa.array([stage] * len(idx), pa.string()), pa.array(list(reasons), pa.string()),
                              pa.array([orjson.dumps(d).decode() if d else None for d in details], pa.string())],
        schema=REJECTED_SCHEMA)


def dead_letter_rows(batch: pa.RecordBatch, error: Exception, stage: str, reason: str = "model_error",
                     field: str = "text") -> pa.RecordBatch:
    """Every row of ``batch`` as a dead letter naming the record, the field and the error."""
    n = batch.num_rows
    messages = [f"{s}:{line}: id={i!r}: field {field!r}: {type(error).__name__}: {error}"
                for s, line, i in zip(batch.column("source").to_pylist(), batch.column("line").to_pylist(),
                                      batch.column("id").to_pylist())]
    raw = [t.encode("utf-8", "surrogatepass") if t is not None else None for t in batch.column("text").to_pylist()]
    return pa.RecordBatch.from_arrays(
        [pa.array([stage] * n, pa.string()), pa.array([reason] * n, pa.string()), pa.array(messages, pa.string()),
         batch.column("source"), batch.column("line"), batch.column("offset"), batch.column("id"),
         pa.array(raw, pa.binary())],
        schema=DEAD_LETTER_SCHEMA)


def split_rows(batch: pa.RecordBatch, tagged: pa.RecordBatch, verdicts: Sequence[tuple[str, dict] | None],
               stage: str) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """(rows of ``tagged`` whose verdict is None, the others as rejected rows of ``batch``).

    ``tagged`` is ``batch`` with the stage's columns appended; a verdict is
    ``(reason, detail)`` for a rejected row."""
    bad = np.fromiter((v is not None for v in verdicts), bool, count=len(verdicts))
    if not bad.any():
        return tagged, None
    rows = np.flatnonzero(bad)
    return (tagged.filter(pa.array(~bad)),
            rejected_rows(batch, rows, [verdicts[i][0] for i in rows], [verdicts[i][1] for i in rows], stage))


def append_columns(batch: pa.RecordBatch, fields: Sequence[pa.Field], columns: dict[str, pa.Array]
                   ) -> pa.RecordBatch:
    """``batch`` with ``columns`` appended in the order (and with the metadata) of ``fields``."""
    for f in fields:
        batch = batch.append_column(f, columns[f.name])
    return batch
