"""A persistent, content-addressed cache of LLM answers (SQLite, WAL mode).

The key is the SHA-256 of everything that decides an answer: the backend's model id,
the task template's hash, the rendered messages, the sampling parameters and the
sample index. Each answer is committed as soon as it arrives, so a rerun of the same
job sends no request and a crashed run resumes where it stopped. The raw response
body is stored beside the answer for audit.

Several worker processes may share one cache directory: SQLite's WAL mode lets
readers run beside one writer, writers wait on the lock (``busy_timeout``) instead of
failing, and ``INSERT OR IGNORE`` makes two workers that computed the same answer
agree on the first one. A connection is opened per process (and per thread: sqlite3
connections are not shared across threads), never inherited across ``fork``.

No Beam or aiohttp import here: the cache is cheap to import in any process.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DB_NAME = "llm-cache.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    content TEXT NOT NULL,
    raw TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created REAL NOT NULL
)
"""


def cache_key(model_id: str, template_hash: str, messages: list[dict], params: dict, sample: int) -> str:
    """SHA-256 over a canonical JSON encoding (sorted keys) of the request's content."""
    blob = json.dumps({"model": model_id, "template": template_hash, "messages": messages, "params": params,
                       "sample": sample}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    content: str
    raw: str | None
    prompt_tokens: int
    completion_tokens: int


class AnswerCache:
    """``get(key)`` / ``put(key, ...)`` over ``DIR/llm-cache.sqlite3``."""

    def __init__(self, directory: str | os.PathLike, busy_timeout_s: float = 60.0):
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self.hits = 0
        self.misses = 0

    def __getstate__(self):  # pickled with a DoFn: connections never travel
        state = self.__dict__.copy()
        state["_local"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        # journal_mode=WAL needs a moment of exclusive access; under a start-up stampede
        # of workers it can report "locked" despite busy_timeout, so retry briefly.
        for attempt in range(50):
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across process crashes
                conn.execute(_SCHEMA)
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 49:
                    raise
                time.sleep(0.05 * (attempt + 1))
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def get(self, key: str) -> CachedAnswer | None:
        row = self._conn().execute(
            "SELECT content, raw, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return CachedAnswer(row[0], row[1], row[2] or 0, row[3] or 0)

    def put(self, key: str, model: str, content: str, raw: str | None, prompt_tokens: int = 0,
            completion_tokens: int = 0) -> None:
        """Committed at once (autocommit): an answer that arrived survives a crash."""
        self._conn().execute(
            "INSERT OR IGNORE INTO answers (key, model, content, raw, prompt_tokens, completion_tokens, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", (key, model, content, raw, prompt_tokens, completion_tokens, time.time()))

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None
