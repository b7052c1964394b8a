"""Rule-table transliteration: declarative tables shipped as YAML data files.

A table has
- ``tokens``: whole-token replacements, tried first (e.g. Maltese ``il-`` -> ``ال``);
- ``rules``: ``[source, target]`` or ``[source, target, context]`` rows applied by
  longest match from left to right; ``context`` is ``initial`` (at the start of the
  word), ``final`` (at its end), ``medial`` (neither) or ``any`` (the default). At
  the same length a rule with a specific context beats an ``any`` rule.
Characters no rule covers are copied. With ``lowercase: true`` matching is done on
a lowercased copy (character by character, so offsets never move).

``transliterate`` returns the output and an offset map: one row per applied rule,
``(src_start, src_end, out_start, out_end)``. A rule may map to "" (Arabic script
leaves short vowels unwritten): its row then has an empty output span.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import yaml

from xlcorpus.transforms.core.resources import shipped_names, shipped_or_path

CONTEXTS = ("initial", "final", "medial", "any")


@dataclass(frozen=True)
class RuleTable:
    name: str
    lowercase: bool
    tokens: dict[str, str]
    rules: dict[tuple[str, str], str]  # (source, context) -> target
    max_len: int

    @classmethod
    def from_dict(cls, data: dict, origin: str = "<table>") -> RuleTable:
        rules: dict[tuple[str, str], str] = {}
        for i, row in enumerate(data.get("rules") or []):
            if not isinstance(row, list) or len(row) not in (2, 3) or not all(isinstance(x, str) for x in row):
                raise ValueError(f"{origin}: rules[{i}] must be [source, target] or [source, target, context], "
                                 f"got {row!r}")
            source, target, context = row[0], row[1], row[2] if len(row) == 3 else "any"
            if context not in CONTEXTS or not source:
                raise ValueError(f"{origin}: rules[{i}]: context must be one of {CONTEXTS} and source non-empty")
            if (source, context) in rules:
                raise ValueError(f"{origin}: rules[{i}]: duplicate rule for {source!r} ({context})")
            rules[(source, context)] = target
        return cls(name=data.get("name", origin), lowercase=bool(data.get("lowercase", False)),
                   tokens={str(k): str(v) for k, v in (data.get("tokens") or {}).items()},
                   rules=rules, max_len=max((len(s) for s, _ in rules), default=1))

    def transliterate(self, word: str) -> tuple[str, np.ndarray]:
        """One token -> (output, offset map of shape (n, 4))."""
        key = "".join(c.lower() if len(c.lower()) == 1 else c for c in word) if self.lowercase else word
        if key in self.tokens:
            out = self.tokens[key]
            return out, np.array([[0, len(word), 0, len(out)]], dtype=np.int32)
        pieces: list[str] = []
        rows: list[tuple[int, int, int, int]] = []
        i, n, out_pos = 0, len(key), 0
        while i < n:
            for length in range(min(self.max_len, n - i), 0, -1):
                source = key[i:i + length]
                specific = "initial" if i == 0 else "final" if i + length == n else "medial"
                target = self.rules.get((source, specific))
                if target is None:
                    target = self.rules.get((source, "any"))
                if target is not None:
                    break
            else:
                length, target = 1, word[i]  # no rule: copy the original character
            pieces.append(target)
            rows.append((i, i + length, out_pos, out_pos + len(target)))
            out_pos += len(target)
            i += length
        return "".join(pieces), np.array(rows, dtype=np.int32).reshape(-1, 4)


def shipped_tables() -> list[str]:
    return shipped_names("tables")


@functools.cache
def load_table(name_or_path: str) -> RuleTable:
    """A shipped table by name (e.g. ``mlt-Arab``) or a YAML file path."""
    path = shipped_or_path("tables", name_or_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a rule table is a YAML mapping")
    return RuleTable.from_dict(data, str(path))
