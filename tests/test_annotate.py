"""LLM-assisted annotation: template tasks, validation and repair, self-consistency, the
answer cache, and fault injection against a real loopback chat-completions server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that
from xlcorpus.schemas import (
    ANNOTATE_FIELDS,
    DEAD_LETTER_SCHEMA,
    DOCUMENT_SCHEMA,
    REJECTED_SCHEMA,
    dataset_schema,
)
from pydantic import ValidationError
from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED
from xlcorpus.transforms.stages.annotate import stage as an
from xlcorpus.transforms.stages.annotate import tasks, validate
from xlcorpus.transforms.stages.annotate import vote as voting
from xlcorpus.transforms.stages.annotate.options import AnnotateConfigError, AnnotateOptions
from xlcorpus.transforms.stages.annotate.stage import Annotator, annotate_batch
from xlcorpus.transforms.backends.llm_cache import AnswerCache, cache_key
from xlcorpus.transforms.backends.llm_client import TokenBucket, parse_retry_after

from .llm_server import (
    DROP,
    HANG,
    INVALID_JSON,
    TRUNCATED,
    ChatServer,
    answer,
    status,
    user_text,
)

REPO = Path(__file__).resolve().parents[1]
KEY_ENV, KEY = "XLCORPUS_TEST_LLM_KEY", "sk-test-5ecret-do-not-leak"


# --- helpers ------------------------------------------------------------------------------
def docs(texts: list[str], first_line: int = 1) -> pa.RecordBatch:
    n = len(texts)
    return pa.RecordBatch.from_pylist(
        [{"id": f"doc{first_line + i}", "text": t, "source": "in.jsonl", "line": first_line + i, "offset": 10 * i,
          "meta": None} for i, t in enumerate(texts)], schema=DOCUMENT_SCHEMA) if n else DOCUMENT_SCHEMA.empty_table()


def entities(*pairs) -> str:
    return json.dumps({"entities": [{"text": t, "label": lab} for t, lab in pairs]})


def stage_of(request: dict) -> str:
    if len(request["messages"]) > 2:
        return "repair"
    return "verify" if "A first annotator" in user_text(request) else "extract"


def opts(server: ChatServer, **kw) -> AnnotateOptions:
    base = {"model": "test-model", "base_url": server.base_url, "backoff_base_s": 0.001, "backoff_max_s": 0.01,
            "timeout_s": 5.0, "max_retries": 3, "two_stage": False, "api_key_env": KEY_ENV}
    return AnnotateOptions(**(base | kw))


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


# --- pure core ------------------------------------------------------------------------------
def test_parse_json_tolerates_fences_and_chatter():
    assert validate.parse_json('{"a": 1}') == ({"a": 1}, None)
    assert validate.parse_json('Sure!\n```json\n{"a": [1, 2]}\n```\nHope it helps.') == ({"a": [1, 2]}, None)
    assert validate.parse_json('The answer is {"a": 1} and {"b": 2}.') == ({"a": 1}, None)
    assert validate.parse_json('[{"text": "x"}] trailing') == ([{"text": "x"}], None)
    value, error = validate.parse_json('{"a": 1')
    assert value is None and "not JSON" in error
    assert validate.parse_json("  ") == (None, "the answer is empty")


def test_schema_errors_subset():
    schema = tasks.load_task("ner").with_labels(["PER", "LOC"]).response_schema
    assert schema["properties"]["entities"]["items"]["properties"]["label"]["enum"] == ["PER", "LOC"]
    assert validate.schema_errors({"entities": [{"text": "x", "label": "PER"}]}, schema) == []
    assert validate.schema_errors({"entities": [{"text": "", "label": "ORG", "x": 1}], "extra": 2}, schema) == [
        "$: unexpected key 'extra'",
        "$.entities[0]: unexpected key 'x'",
        "$.entities[0].text: shorter than 1 characters",
        "$.entities[0].label: 'ORG' is not one of ['PER', 'LOC']"]
    assert validate.schema_errors([], schema) == ["$: expected object, got list"]
    assert validate.schema_errors({"n": 1.5}, {"properties": {"n": {"type": "integer"}}}) == [
        "$.n: expected integer, got float"]


def test_find_span_after_whitespace_normalisation():
    text = "Ada  Lovelace\nmet\tAda Lovelace; Adam too."
    assert validate.find_span(text, "Ada Lovelace") == [(0, 13), (18, 30)]
    assert text[0:13] == "Ada  Lovelace"
    assert validate.find_span(text, " Ada\n Lovelace ") == [(0, 13), (18, 30)]
    assert validate.find_span(text, "Ada") == [(0, 3), (18, 21)]  # whole words win over "Adam"
    assert validate.find_span(text, "Ad") == [(0, 2), (18, 20), (32, 34)]  # no whole word: substrings
    assert validate.find_span(text, "Babbage") == [] and validate.find_span(text, "  ") == []


def test_validate_answer_ner_spans_labels_and_overlaps():
    task = tasks.load_task("ner")
    text = "New York is in New York State. York is old."
    good, errors = validate.validate_answer(task, text, json.loads(entities(
        ("New York", "LOC"), ("York", "LOC"), ("New York State", "LOC"), ("New York", "LOC"))))
    assert errors == []
    assert good.value == {"entities": [{"text": "New York", "label": "LOC"}, {"text": "York", "label": "LOC"},
                                       {"text": "New York State", "label": "LOC"}]}  # duplicates dropped
    assert good.annotation["entities"][0]["offsets"] == {"text": [0, 8]}
    # every occurrence; a longer span wins over one inside it
    assert [(s["start"], s["end"]) for s in good.spans] == [(0, 8), (15, 29), (31, 35)]
    bad, errors = validate.validate_answer(task, text, json.loads(entities(("Boston", "LOC"), ("York", "CITY"))))
    assert bad is None
    assert errors == ["$.entities[1].label: 'CITY' is not one of ['PER', 'ORG', 'LOC', 'MISC']"]
    bad, errors = validate.validate_answer(task, text, json.loads(entities(("Boston", "LOC"))))
    assert errors == ["entities[0].text: 'Boston' does not occur in the text"]
    # a bare list is the list of entities
    ok, _ = validate.validate_answer(task, text, [{"text": "York", "label": "LOC"}])
    assert ok.value == {"entities": [{"text": "York", "label": "LOC"}]}


def test_validate_answer_openie_and_classify():
    text = "Marie Curie discovered polonium in 1898."
    task = tasks.load_task("openie")
    ok, errors = validate.validate_answer(task, text, {"triples": [
        {"subject": "Marie Curie", "relation": "discovered", "object": "polonium"}]})
    assert errors == [] and ok.spans is None
    assert ok.annotation["triples"][0]["offsets"] == {"subject": [0, 11], "object": [23, 31]}
    _, errors = validate.validate_answer(task, text, {"triples": [
        {"subject": "Pierre Curie", "relation": "discovered", "object": "radium"}]})
    assert errors == ["triples[0].subject: 'Pierre Curie' does not occur in the text",
                      "triples[0].object: 'radium' does not occur in the text"]
    cls = tasks.load_task("classify").with_labels(["sci", "sport"])
    ok, _ = validate.validate_answer(cls, text, {"label": "sci"})
    assert ok.label == "sci" and ok.spans is None
    assert validate.validate_answer(cls, text, {"label": "art"})[1] == [
        "$.label: 'art' is not one of ['sci', 'sport']"]


def test_vote_plurality_and_confidence():
    task = tasks.load_task("classify")
    a = {lab: validate.validate_answer(task, "t", {"label": lab})[0] for lab in ("positive", "negative")}
    winner, conf = voting.vote([a["negative"], a["positive"], None, a["positive"]], 4)
    assert winner.label == "positive" and conf == 0.5
    winner, conf = voting.vote([a["negative"], a["positive"]], 2)  # tie: the first sample wins
    assert winner.label == "negative" and conf == 0.5
    assert voting.vote([None, None], 2) == (None, 0.0)
    ner = tasks.load_task("ner")
    x, _ = validate.validate_answer(ner, "A B", json.loads(entities(("A", "PER"), ("B", "LOC"))))
    y, _ = validate.validate_answer(ner, "A B", json.loads(entities(("B", "LOC"), ("A", "PER"))))
    assert x.key == y.key  # the same entities in another order are the same answer
    assert voting.vote([y, x, None], 3) == (y, pytest.approx(2 / 3))


def test_shipped_tasks_and_user_templates(tmp_path):
    assert tasks.shipped_tasks() == ["classify", "freeform", "ner", "openie"]
    for name in tasks.shipped_tasks():
        task = tasks.load_task(name)
        for prompt in ("extract", "verify"):
            msgs = task.messages(prompt, text="Some TEXT here.", candidates='{"x": 1}')
            assert msgs[0]["role"] == "system" and "Some TEXT here." in msgs[1]["content"]
            assert "{{" not in msgs[1]["content"] and json.dumps(task.response_schema, separators=(",", ":")) in \
                msgs[1]["content"]
        assert '{"x": 1}' in task.messages("verify", text="t", candidates='{"x": 1}')[1]["content"]
    path = tmp_path / "mine.yaml"
    path.write_text((REPO / "transforms/tasks/classify.yaml").read_text().replace("{{labels}}", "{{labelz}}", 1))
    with pytest.raises(AnnotateConfigError, match=r"unknown placeholder\(s\) \['labelz'\]"):
        tasks.load_task(str(path))
    path.write_text((REPO / "transforms/tasks/classify.yaml").read_text().replace("name: classify", "name: mine"))
    assert tasks.load_task(str(path)).name == "mine"
    # the template and the labels are part of the cache identity
    assert tasks.load_task("classify").hash != tasks.load_task(str(path)).hash
    assert tasks.load_task("classify").hash != tasks.load_task("classify").with_labels(["a"]).hash
    with pytest.raises(AnnotateConfigError, match=r"no shipped task 'nope'; shipped: \['classify'"):
        tasks.load_task("nope")
    with pytest.raises(AnnotateConfigError, match="cannot read"):
        tasks.load_task(str(tmp_path / "missing.yaml"))
    with pytest.raises(AnnotateConfigError, match="n_samples > 1 needs temperature > 0"):
        an.Annotate(AnnotateOptions(model="m", n_samples=3)).check()
    with pytest.raises(ValidationError, match="backend"):
        AnnotateOptions(model="m", backend="carrier-pigeon")


def test_retry_after_and_token_bucket():
    assert parse_retry_after("3") == 3.0 and parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 9 < parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 11))) <= 11

    async def drain():
        bucket = TokenBucket(rate=50.0, capacity=10.0)
        t0 = time.monotonic()
        await bucket.acquire(10)  # the saved-up burst
        t1 = time.monotonic()
        await bucket.acquire(5)  # 5 tokens at 50/s
        return t1 - t0, time.monotonic() - t1

    burst, wait = asyncio.run(drain())
    assert burst < 0.05 and 0.08 <= wait < 0.5


# --- faults against the loopback server --------------------------------------------------------
GOLD = ("Ada Lovelace", "PER"), ("London", "LOC")
FAULTS = {"F429": [status(429, retry_after="0.5")], "F5xx": [status(500), status(503)], "FHANG": [HANG],
          "FDROP": [DROP], "FJSON": [INVALID_JSON], "FTRUNC": [TRUNCATED], "FNONE": []}


def fault_responder(request, attempt):
    text = user_text(request)
    marker = next((m for m in FAULTS if m in text), None)
    if "ALWAYS500" in text:
        return status(500, body='{"error": "boom"}')
    if "DENIED" in text:  # a server that echoes the request headers in its error: the key must not leak
        return status(401, body=f'{{"error": "bad key in Authorization: Bearer {os.environ[KEY_ENV]}"}}')
    if marker and attempt < len(FAULTS[marker]):
        return FAULTS[marker][attempt]
    return answer(entities(*GOLD))


def test_every_fault_is_retried_then_answered_with_exact_counts():
    texts = [f"{m}: Ada Lovelace visited London." for m in FAULTS]
    with ChatServer(fault_responder, hang_s=10) as server:
        annotator = Annotator(opts(server, timeout_s=0.5, concurrency=4))
        kept, rejected, dead = annotate_batch(docs(texts), annotator)
        stats = annotator.stats()
        annotator.close()
        requests = list(server.requests)
    assert rejected is None and dead is None and kept.num_rows == len(texts)
    n_faults = sum(len(f) for f in FAULTS.values())  # 7
    assert len(requests) == len(texts) + n_faults == 14
    assert stats["requests"] == 14 and stats["retries"] == n_faults
    for row, text in zip(kept.to_pylist(), texts):
        s = len(text.split(":")[0]) + 2
        assert json.loads(row["annotation"]) == {"entities": [
            {"text": "Ada Lovelace", "label": "PER", "offsets": {"text": [s, s + 12]}},
            {"text": "London", "label": "LOC", "offsets": {"text": [s + 21, s + 27]}}]}
        assert row["annotation_spans"] == [{"start": s, "end": s + 12, "label": "PER"},
                                           {"start": s + 21, "end": s + 27, "label": "LOC"}]
        assert row["annotation_confidence"] == 1.0 and row["annotation_model"] == "openai:test-model"
        assert [e["stage"] for e in json.loads(row["annotation_raw"])] == ["extract"]
    # Retry-After was honoured (our own backoff is at most 10 ms here)
    t429 = [r["t"] for r in requests if "F429" in user_text(r["json"])]
    assert len(t429) == 2 and t429[1] - t429[0] >= 0.5
    # the key went in the header, and nowhere else
    assert {r["headers"]["authorization"] for r in requests} == {f"Bearer {KEY}"}
    assert {r["headers"]["content-type"] for r in requests} == {"application/json"}


def test_retry_budget_then_dead_letter_and_refusals_are_not_retried(caplog):
    caplog.set_level(logging.DEBUG)
    texts = ["ALWAYS500 Ada Lovelace", "FNONE: Ada Lovelace visited London.", "DENIED Ada"]
    with ChatServer(fault_responder) as server:
        annotator = Annotator(opts(server, max_retries=3))
        kept, rejected, dead = annotate_batch(docs(texts), annotator)
        stats = annotator.stats()
        annotator.close()
        per_text = {t: sum(t == user_text(r["json"]).split("Text:\n")[-1].strip() for r in server.requests)
                    for t in texts}
    assert per_text == {texts[0]: 4, texts[1]: 1, texts[2]: 1}  # 1 + max_retries; 401 is not retried
    assert stats["retries"] == 3
    assert kept.column("id").to_pylist() == ["doc2"] and rejected is None
    assert dead.schema == DEAD_LETTER_SCHEMA
    rows = dead.to_pylist()
    assert [(r["id"], r["stage"], r["reason"]) for r in rows] == [
        ("doc1", "annotate", "llm_unavailable"), ("doc3", "annotate", "llm_request_rejected")]
    assert rows[0]["error"] == (f"in.jsonl:1: id='doc1': field 'text': LLMUnavailable: {server.base_url}: gave up "
                                f"after 4 attempt(s); last error: HTTP 500: {{\"error\": \"boom\"}}")
    assert rows[0]["raw"] == texts[0].encode() and rows[0]["line"] == 1
    assert "HTTP 401" in rows[1]["error"] and "Bearer ***" in rows[1]["error"]
    everything = json.dumps([kept.to_pylist(), [dict(r, raw=None) for r in rows]], default=str) + caplog.text
    assert KEY not in everything


def test_response_format_400_falls_back_to_plain_prompting():
    def responder(request, attempt):
        if "response_format" in request:
            return status(400, body='{"error": "response_format is not supported"}')
        return answer(entities(*GOLD))

    texts = ["Ada Lovelace visited London.", "Ada Lovelace left London."]
    with ChatServer(responder) as server:
        annotator = Annotator(opts(server, concurrency=1))
        kept, rejected, dead = annotate_batch(docs(texts), annotator)
        stats = annotator.stats()
        annotator.close()
        sent = [("response_format" in r["json"]) for r in server.requests]
    assert kept.num_rows == 2 and rejected is None and dead is None
    assert sent == [True, False, False]  # asked once with the schema, then never again
    assert stats["schema_fallbacks"] == 1 and stats["retries"] == 0
    assert server.requests[0]["json"]["response_format"]["json_schema"]["schema"]["required"] == ["entities"]


def test_concurrency_and_requests_per_second_limits():
    with ChatServer(lambda r, a: answer('{"label": "positive"}'), delay_s=0.2) as server:
        annotator = Annotator(opts(server, task="classify", concurrency=2))
        t0 = time.monotonic()
        kept, _, _ = annotate_batch(docs([f"text {i}" for i in range(6)]), annotator)
        elapsed = time.monotonic() - t0
        annotator.close()
    assert kept.num_rows == 6 and 0.6 <= elapsed < 1.5  # 3 waves of 2
    with ChatServer(lambda r, a: answer('{"label": "positive"}')) as server:
        annotator = Annotator(opts(server, task="classify", concurrency=16, requests_per_s=10))
        t0 = time.monotonic()
        kept, _, _ = annotate_batch(docs([f"text {i}" for i in range(15)]), annotator)
        elapsed = time.monotonic() - t0
        annotator.close()
    assert kept.num_rows == 15 and 0.45 <= elapsed < 1.5  # a burst of 10, then 5 at 10/s


# --- validation, repair, two stages, self-consistency ------------------------------------------
def test_span_not_in_text_gets_a_repair_prompt():
    def responder(request, attempt):
        if stage_of(request) == "repair":
            return answer(entities(("Ada Lovelace", "PER")))
        return answer(entities(("Ada Lovelaces", "PER")))

    with ChatServer(responder) as server:
        annotator = Annotator(opts(server))
        kept, rejected, _ = annotate_batch(docs(["Ada Lovelace wrote notes."]), annotator)
        annotator.close()
        reqs = [r["json"] for r in server.requests]
    assert rejected is None and len(reqs) == 2
    repair = reqs[1]["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert repair[2]["content"] == entities(("Ada Lovelaces", "PER"))
    assert repair[3]["content"].startswith(
        "Your answer cannot be used: entities[0].text: 'Ada Lovelaces' does not occur in the text")
    row = kept.to_pylist()[0]
    assert row["annotation_spans"] == [{"start": 0, "end": 12, "label": "PER"}]
    assert [(e["repair"], e["errors"]) for e in json.loads(row["annotation_raw"])] == [
        (0, ["entities[0].text: 'Ada Lovelaces' does not occur in the text"]), (1, [])]


def test_invalid_after_repairs_is_rejected_with_reason_and_raw_answers():
    bad = [answer("I think the entities are Ada and London."), answer(entities(("Ada", "PERSON"))),
           answer(entities(("Charles", "PER")))]
    with ChatServer(script=list(bad)) as server:  # repairs are new prompts: script by arrival
        annotator = Annotator(opts(server, max_repairs=2))
        kept, rejected, dead = annotate_batch(docs(["Ada lived in London."]), annotator)
        annotator.close()
        n = server.count
    assert n == 3 and kept.num_rows == 0 and dead is None
    assert rejected.schema == REJECTED_SCHEMA
    row = rejected.to_pylist()[0]
    assert (row["id"], row["stage"], row["reason"]) == ("doc1", "annotate", "invalid_answer")
    detail = json.loads(row["detail"])
    assert detail["errors"] == [{"sample": 0, "stage": "extract",
                                 "errors": ["entities[0].text: 'Charles' does not occur in the text"]}]
    assert [e["content"] for e in detail["raw"]] == [b["content"] for b in bad]
    assert detail["raw"][0]["errors"] == ["the answer is not JSON: 'I think the entities are Ada and London.'"]
    assert detail["raw"][1]["errors"] == [
        "$.entities[0].label: 'PERSON' is not one of ['PER', 'ORG', 'LOC', 'MISC']"]


def test_two_stages_verify_sees_and_corrects_stage_one():
    def responder(request, attempt):
        if stage_of(request) == "verify":
            assert '"Grace"' in user_text(request)  # stage 1's answer is shown to stage 2
            return answer(entities(("Grace Hopper", "PER"), ("Yale", "ORG")))
        return answer(entities(("Grace", "PER")))

    with ChatServer(responder) as server:
        annotator = Annotator(opts(server, two_stage=True))
        kept, _, _ = annotate_batch(docs(["Grace Hopper  studied\nat Yale."]), annotator)
        annotator.close()
        assert [stage_of(r["json"]) for r in server.requests] == ["extract", "verify"]
    row = kept.to_pylist()[0]
    assert row["annotation_spans"] == [{"start": 0, "end": 12, "label": "PER"},
                                       {"start": 25, "end": 29, "label": "ORG"}]
    assert [e["stage"] for e in json.loads(row["annotation_raw"])] == ["extract", "verify"]


def test_self_consistency_majority_vote_and_confidence():
    votes = {10: "positive", 11: "negative", 12: "positive", 13: "neutral", 14: "positive"}

    def responder(request, attempt):
        assert request["temperature"] == 0.8
        return answer(json.dumps({"label": votes[request["seed"]]}))

    with ChatServer(responder) as server:
        annotator = Annotator(opts(server, task="classify", n_samples=5, temperature=0.8, seed=10,
                                   min_confidence=0.5))
        kept, rejected, _ = annotate_batch(docs(["A good day."]), annotator)
        assert sorted(r["json"]["seed"] for r in server.requests) == [10, 11, 12, 13, 14]
        annotator.close()
        votes.update({10: "negative", 11: "neutral", 14: "negative"})  # now at best 2 of 5: below 0.5
        annotator = Annotator(opts(server, task="classify", n_samples=5, temperature=0.8, seed=10,
                                   min_confidence=0.5))
        kept2, rejected2, _ = annotate_batch(docs(["A good day."]), annotator)
        annotator.close()
    row = kept.to_pylist()[0]
    assert rejected is None and row["annotation_label"] == "positive"
    assert row["annotation_confidence"] == pytest.approx(0.6)
    assert json.loads(row["annotation"]) == {"label": "positive"}
    assert kept2.num_rows == 0 and rejected2.column("reason").to_pylist() == ["low_confidence"]
    assert json.loads(rejected2.column("detail")[0].as_py())["raw"][0]["content"] == '{"label": "negative"}'
    assert json.loads(rejected2.column("detail")[0].as_py())["confidence"] == pytest.approx(0.4)


def test_empty_text_and_missing_column():
    with ChatServer() as server:
        annotator = Annotator(opts(server))
        kept, rejected, dead = annotate_batch(docs(["   ", ""]), annotator)
        assert server.count == 0 and kept.num_rows == 0 and dead is None
        assert rejected.column("reason").to_pylist() == ["empty_text", "empty_text"]
        with pytest.raises(AnnotateConfigError, match="no column 'translit_text'"):
            annotate_batch(docs(["x"]), Annotator(opts(server, text_column="translit_text")))
        annotator.close()


# --- the cache -------------------------------------------------------------------------------
def ner_responder(request, attempt):
    text = user_text(request)
    if stage_of(request) == "verify":
        return answer(entities(*GOLD) if "Ada" in text else entities())
    return answer(entities(("Ada Lovelace", "PER")) if "Ada" in text else entities())


def test_rerun_makes_zero_requests(tmp_path):
    texts = ["Ada Lovelace visited London.", "Nothing to see.", "Ada Lovelace left London."]
    results = []
    for run in range(2):
        with ChatServer(ner_responder) as server:
            annotator = Annotator(opts(server, two_stage=True, cache_dir=str(tmp_path / "cache")))
            kept, rejected, dead = annotate_batch(docs(texts), annotator)
            results.append((kept.drop_columns(["annotation_raw"]), server.count, annotator.stats()))
            raws = kept.column("annotation_raw").to_pylist()
            annotator.close()
        assert rejected is None and dead is None
        assert all(e["cached"] == (run == 1) for r in raws for e in json.loads(r))
    (first, n1, s1), (second, n2, s2) = results
    assert n1 == 6 and s1["cache_misses"] == 6 and s1["cache_hits"] == 0
    assert n2 == 0 and s2["requests"] == 0 and s2["cache_hits"] == 6
    assert first.equals(second)
    # the raw response bodies are there for audit
    with sqlite3.connect(tmp_path / "cache" / "llm-cache.sqlite3") as db:
        bodies = [json.loads(raw) for (raw,) in db.execute("SELECT raw FROM answers")]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert len(bodies) == 6 and all(b["object"] == "chat.completion" for b in bodies)
    # a different model or template is a different key: nothing reused
    with ChatServer(ner_responder) as server:
        annotator = Annotator(opts(server, model="other-model", cache_dir=str(tmp_path / "cache")))
        annotate_batch(docs(texts[:1]), annotator)
        annotator.close()
        assert server.count == 1


CRASH_CHILD = textwrap.dedent("""
    import sys, pyarrow as pa
    from xlcorpus.schemas import DOCUMENT_SCHEMA
    from xlcorpus.transforms.stages.annotate.options import AnnotateOptions
    from xlcorpus.transforms.stages.annotate.stage import Annotator, annotate_batch
    url, cache, texts = sys.argv[1], sys.argv[2], sys.argv[3:]
    batch = pa.RecordBatch.from_pylist([{"id": str(i), "text": t, "source": "s", "line": i, "offset": 0}
                                        for i, t in enumerate(texts)], schema=DOCUMENT_SCHEMA)
    annotate_batch(batch, Annotator(AnnotateOptions(model="test-model", base_url=url, cache_dir=cache,
                                                    concurrency=1, timeout_s=60, two_stage=True)))
""")


def test_a_crashed_run_resumes_where_it_stopped(tmp_path):
    texts = ["Ada Lovelace visited London.", "Nothing to see.", "Ada Lovelace left London.",
             "Ada Lovelace met London bankers."]
    cache = str(tmp_path / "cache")
    with ChatServer(ner_responder, script=[answer(entities()), answer(entities()), answer(entities()), HANG],
                    hang_s=60) as server:
        # the scripted first answers are all valid (empty); request 4 hangs and the worker is killed
        child = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, server.base_url, cache, *texts], cwd=REPO)
        try:
            deadline = time.monotonic() + 60
            while server.count < 4 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.02)
            assert server.count == 4, child.poll()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert len(AnswerCache(cache)) == 3  # every answer that arrived was committed
    with ChatServer(ner_responder) as server:
        annotator = Annotator(AnnotateOptions(model="test-model", base_url=server.base_url, cache_dir=cache,
                                              concurrency=1, two_stage=True))
        kept, rejected, dead = annotate_batch(docs(texts), annotator)
        stats = annotator.stats()
        annotator.close()
        assert server.count == 2 * len(texts) - 3
    assert stats["cache_hits"] == 3 and kept.num_rows == 4 and rejected is None and dead is None


CACHE_CHILD = textwrap.dedent("""
    import sys
    from xlcorpus.transforms.backends.llm_cache import AnswerCache
    cache, worker = AnswerCache(sys.argv[1]), int(sys.argv[2])
    for i in range(300):
        k = (i * 7 + worker * 50) % 300  # the workers overlap: they race on the same keys
        cache.put(f"key{k}", "m", f"answer{k}", f"raw{k}", k, 1)
        got = cache.get(f"key{(k * 13) % 300}")
        assert got is None or got.content == f"answer{(k * 13) % 300}", got
    print(cache.hits)
""")


def test_cache_is_safe_under_several_processes(tmp_path):
    children = [subprocess.Popen([sys.executable, "-c", CACHE_CHILD, str(tmp_path), str(w)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(4)]
    outs = [c.communicate(timeout=120) for c in children]
    assert [c.returncode for c in children] == [0] * 4, [err for _, err in outs]
    cache = AnswerCache(tmp_path)
    assert len(cache) == 300
    assert all(cache.get(f"key{k}").content == f"answer{k}" and cache.get(f"key{k}").prompt_tokens == k
               for k in range(300))
    assert cache_key("m", "t", [{"role": "user", "content": "x"}], {"temperature": 0}, 0) == cache_key(
        "m", "t", [{"content": "x", "role": "user"}], {"temperature": 0}, 0)
    assert cache_key("m", "t", [], {}, 0) != cache_key("m", "t", [], {}, 1)


# --- Beam ------------------------------------------------------------------------------------
def collect(path: Path):
    """A matcher that writes what reached it to ``path`` (matchers run on the workers,
    so they cannot hand Python objects back to the test)."""
    def write(batches):
        rows = sorted((r for b in batches for r in b.to_pylist()), key=lambda r: r["id"])
        path.write_text(json.dumps(rows, default=lambda b: b.decode("utf-8", "replace")))
    return write


def test_annotate_transform_on_the_direct_runner(tmp_path):
    batches = [docs(["Ada Lovelace visited London.", "ALWAYS500 here", "   "], first_line=1),
               docs(["Nothing to see.", "BADSPAN Ada"], first_line=4)]

    def responder(request, attempt):
        if "BADSPAN" in user_text(request):
            return answer(entities(("Charles Babbage", "PER")))
        return fault_responder(request, attempt) if "ALWAYS500" in user_text(request) else ner_responder(
            request, attempt)


    with ChatServer(responder) as server:
        o = opts(server, two_stage=True, max_retries=2, max_repairs=1, cache_dir=str(tmp_path / "c"))
        p = beam.Pipeline("DirectRunner")
        out = p | beam.Create(batches, reshuffle=False) | an.Annotate(o).transform()
        for tag in (KEPT, REJECTED, DEAD_LETTER):
            assert_that(out[tag], collect(tmp_path / f"{tag}.json"), label=tag)
        result = p.run()
        result.wait_until_finish()
        n_requests = server.count
    kept, rejected, dead = (json.loads((tmp_path / f"{tag}.json").read_text()) for tag in (KEPT, REJECTED,
                                                                                               DEAD_LETTER))
    assert [r["id"] for r in kept] == ["doc1", "doc4"]
    assert kept[0]["annotation_spans"] == [{"start": 0, "end": 12, "label": "PER"},
                                           {"start": 21, "end": 27, "label": "LOC"}]
    assert kept[1]["annotation_spans"] == [] and kept[1]["annotation_task"] == "ner"
    assert pa.Table.from_pylist(kept, schema=dataset_schema(["annotate"])).num_rows == 2
    assert [(r["id"], r["reason"]) for r in rejected] == [("doc3", "empty_text"), ("doc5", "invalid_answer")]
    assert [(r["id"], r["reason"]) for r in dead] == [("doc2", "llm_unavailable")]
    # 2 + 2 (two stages) + 3 (1 + 2 retries) + 2 (answer + 1 repair)
    assert n_requests == 9
    counters = {m.key.metric.name: m.committed for m in result.metrics().query(
        MetricsFilter().with_namespace("xlcorpus.annotate"))["counters"]}
    assert counters["requests"] == 9 and counters["retries"] == 2 and counters["cache_misses"] == 7
    assert counters["in"] == 5 and counters["kept"] == 2 and counters["rejected"] == 2 and counters["dead_letter"] == 1
    assert counters["prompt_tokens"] > 0 and counters["completion_tokens"] > 0
    assert KEY not in json.dumps([kept, rejected, dead])


def test_annotate_fields_are_registered():
    assert [f.name for f in ANNOTATE_FIELDS] == ["annotation", "annotation_spans", "annotation_label",
                                                  "annotation_confidence", "annotation_model", "annotation_task",
                                                  "annotation_raw"]
    assert dataset_schema(["annotate"]).field("annotation").metadata == {b"xlcorpus.stage": b"annotate"}


# --- in-process CTranslate2 ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    """A randomly initialised 1-layer decoder over a SentencePiece vocabulary: its output is garbage."""
    import ctranslate2
    import sentencepiece as spm
    from ctranslate2.specs import transformer_spec
    from ctranslate2.specs.model_spec import visit_spec

    root = tmp_path_factory.mktemp("tiny-llm")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(['{"entities": [{"text": "Ada", "label": "PER"}]}', "Ada Lovelace lived in London.",
                                 "Find the named entities in the text below.", "system user assistant"] * 20))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root / "sp"), vocab_size=48,
                                   model_type="unigram", minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(root / "sp.model"))
    vocab = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    spec = transformer_spec.TransformerDecoderModelSpec.from_config(num_layers=1, num_heads=2)
    d, ff, rng = 16, 32, np.random.default_rng(7)

    def fill(layer, name, value):
        if value is not None:
            return
        attr = name.split("/")[-1]
        shape = {"gamma": (d,), "beta": (d,)}.get(attr)
        if shape is None:
            shape = ((len(vocab), d) if "embeddings" in name or "projection" in name else
                     (3 * d, d) if "self_attention/linear_0" in name else
                     (d, d) if "self_attention/linear_1" in name else
                     (ff, d) if "ffn/linear_0" in name else (d, ff))
        setattr(layer, attr, np.ones(shape, np.float32) if attr == "gamma" else
                rng.normal(0, 0.5, shape).astype(np.float32))

    visit_spec(spec, fill)
    spec.register_vocabulary(vocab)
    spec.validate()
    model = root / "model"
    model.mkdir()
    spec.save(str(model))
    ctranslate2.Generator(str(model))  # it loads
    return str(model), str(root / "sp.model")


def test_ctranslate2_garbage_is_rejected_cleanly(tiny_decoder):
    model, tokenizer = tiny_decoder
    texts = ["Ada Lovelace lived in London.", "Charles Babbage too.", "A third line."]
    results = {}
    for tok in (tokenizer, None):  # SentencePiece, then whitespace tokens
        annotator = Annotator(AnnotateOptions(backend="ctranslate2", model=model, tokenizer=tok, max_tokens=24,
                                              max_repairs=1))
        kept, rejected, dead = annotate_batch(docs(texts), annotator)
        results[tok] = (kept.num_rows, rejected.to_pylist(), dead, annotator.stats())
        annotator.close()
    for tok, (n_kept, rejected, dead, stats) in results.items():
        assert n_kept == 0 and dead is None
        assert [r["reason"] for r in rejected] == ["invalid_answer"] * 3
        for r in rejected:
            detail = json.loads(r["detail"])
            assert len(detail["raw"]) == 2 and detail["errors"][0]["stage"] == "extract"  # answer + 1 repair
            assert all(e["errors"] for e in detail["raw"])
        assert stats["requests"] == 6 and stats["completion_tokens"] > 0
    assert annotator.model_id.startswith("ctranslate2:model:")


def test_ctranslate2_backend_in_a_pipeline(tiny_decoder, tmp_path):
    model, tokenizer = tiny_decoder
    o = AnnotateOptions(backend="ctranslate2", model=model, tokenizer=tokenizer, max_tokens=16, max_repairs=0,
                        task="classify", cache_dir=str(tmp_path / "c"))
    p = beam.Pipeline("DirectRunner")
    out = (p | beam.Create([docs(["Ada Lovelace lived in London.", "x y"])], reshuffle=False)
           | an.Annotate(o).transform())
    for tag in (KEPT, REJECTED):
        assert_that(out[tag], collect(tmp_path / f"{tag}.json"), label=tag)
    p.run().wait_until_finish()
    kept, rejected = (json.loads((tmp_path / f"{tag}.json").read_text()) for tag in (KEPT, REJECTED))
    assert kept == [] and [r["reason"] for r in rejected] == ["invalid_answer"] * 2
    assert len(AnswerCache(tmp_path / "c")) == 2
