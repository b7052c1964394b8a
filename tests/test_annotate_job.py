"""LLM annotation inside the corpus job: config, stage order, dataset columns, report
counters, and a rerun that sends no request (the loopback chat server stands in for
vLLM / Ollama)."""

from __future__ import annotations

import json

import datasets
import pytest

from xlcorpus.pipelines.config import ConfigError, load_config
from xlcorpus.pipelines.corpus import run_corpus

from .conftest import write_jsonl
from .llm_server import ChatServer, answer, user_text

TEXTS = {"a": "What a wonderful, sunny day at the beach!", "b": "The bus was late again and I missed work.",
         "c": "The meeting is at ten."}


def sentiment(request: dict, attempt: int) -> dict:
    text = user_text(request)
    label = "positive" if "wonderful" in text else "negative" if "missed" in text else "neutral"
    return answer(json.dumps({"label": label}))


def _config(tmp_path, server: ChatServer, out: str, **annotate) -> dict:
    return {"input": {"paths": [str(tmp_path / "in.jsonl")]}, "langid": {"enabled": False},
            "output": {"path": str(tmp_path / out), "splits": {"train": 1.0}},
            "annotate": {"enabled": True, "task": "classify", "model": "test-model", "base_url": server.base_url,
                         "two_stage": False, "cache_dir": str(tmp_path / "cache"), "api_key_env": "XLC_TEST_KEY",
                         **annotate}}


def test_corpus_job_annotates_reports_and_reruns_for_free(tmp_path, monkeypatch):
    monkeypatch.setenv("XLC_TEST_KEY", "sk-never-in-the-report")
    write_jsonl(tmp_path / "in.jsonl", [{"id": k, "text": t} for k, t in TEXTS.items()])
    with ChatServer(sentiment) as server:
        first = run_corpus(load_config(data=_config(tmp_path, server, "one")))
        sent_first = server.count
        second = run_corpus(load_config(data=_config(tmp_path, server, "two")))
        sent_second = server.count - sent_first
    assert sent_first == 3 and sent_second == 0
    assert first["annotate"]["requests"] == 3 and first["annotate"]["cache_misses"] == 3
    assert second["annotate"].get("requests", 0) == 0 and second["annotate"]["cache_hits"] == 3
    assert [s["stage"] for s in first["stages"]] == ["read", "annotate"]
    assert first["accounting"]["balanced"] and first["accounting"]["kept"] == 3
    ds = datasets.load_from_disk(str(tmp_path / "one"))["train"]
    labels = dict(zip(ds["id"], ds["annotation_label"]))
    assert labels == {"a": "positive", "b": "negative", "c": "neutral"}
    assert set(ds["annotation_model"]) == {"openai:test-model"}
    report_text = (tmp_path / "one" / "report.json").read_text()
    assert "sk-never-in-the-report" not in report_text and "XLC_TEST_KEY" in report_text


def test_annotate_config_needs_a_model_and_a_known_task(tmp_path):
    with pytest.raises(ConfigError, match="annotate.model is required"):
        load_config(data={"annotate": {"enabled": True}})
    with pytest.raises(ConfigError, match="annotate"):
        load_config(data={"annotate": {"enabled": True, "model": "m", "task": "no-such-task"}})
    assert not load_config(data={}).annotate.enabled  # off unless configured
