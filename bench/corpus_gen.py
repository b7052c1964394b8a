"""Generated multilingual JSONL for the benchmarks: word salads per language built
from the bundled demo sample (deterministic for a seed)."""

from __future__ import annotations

import json
import random
from pathlib import Path


def demo_vocabulary() -> dict[str, list[str]]:
    """Language -> the words of its demo-sample lines (noise, broken and the planted
    duplicate lines left out, so the generated corpora stay what they were)."""
    from xlcorpus.pipelines.cli import demo_config_path

    by_lang: dict[str, list[str]] = {}
    for line in (demo_config_path().parent / "demo.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) or "-" not in str(rec.get("id")):
            continue
        lang = rec["id"].split("-")[0]
        if lang not in ("noise", "broken", "boiler") and not rec["id"].endswith("-copy"):
            by_lang.setdefault(lang, []).extend(rec["text"].split())
    return by_lang


def make_corpus(directory: Path, n: int, files: int, seed: int = 0) -> list[Path]:
    """n JSONL lines in `files` files: word salads per language from the demo sample."""
    by_lang = demo_vocabulary()
    rng = random.Random(seed)
    langs = sorted(by_lang)
    paths = [directory / f"part-{i:03d}.jsonl" for i in range(files)]
    handles = [open(p, "w", encoding="utf-8") for p in paths]
    for i in range(n):
        words = by_lang[langs[i % len(langs)]]
        text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 20)))
        handles[i % files].write(json.dumps({"id": f"b{i}", "text": text}, ensure_ascii=False) + "\n")
    for h in handles:
        h.close()
    return paths
