"""One model per worker process, shared by the DoFn instances (threads) in it.

Beam pickles DoFns with the pipeline, so models are never attributes set in
``__init__``: a stage's ``setup`` calls ``shared_model(key, load)``, which loads once
per process and key through ``apache_beam.utils.shared`` (imported lazily, so stage
cores stay importable without Beam).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_SHARED = None
_LOCK = threading.Lock()
_HOLDERS: dict[str, object] = {}  # strong references: shared.Shared only keeps weak ones


class _Holder:
    """shared.Shared needs a weak-referenceable object."""

    def __init__(self, value: Any):
        self.value = value


def shared_model(key: str, load: Callable[[], Any]) -> Any:
    """``load()``'s result, loaded once per worker process for each ``key``."""
    global _SHARED
    with _LOCK:
        if _SHARED is None:
            from apache_beam.utils import shared

            _SHARED = shared.Shared()
    holder = _SHARED.acquire(lambda: _Holder(load()), tag=key)
    _HOLDERS[key] = holder
    return holder.value
