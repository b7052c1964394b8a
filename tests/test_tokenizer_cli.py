"""`xlcorpus tokenizer train` and `xlcorpus tokenizer fertility` on the demo sample."""

from __future__ import annotations

import json

import sentencepiece as spm

from xlcorpus.pipelines.cli import demo_config_path, main


def test_train_then_fertility_per_language(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as out:
        for line in (demo_config_path().parent / "demo.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("text"), str) and rec.get("id", "")[:3] in (
                    "eng", "mlt", "swa", "rus"):
                rec["lang"] = rec["id"][:3]
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    assert main(["tokenizer", "train", "--input", str(corpus), "--out", str(tmp_path / "sp"),
                 "--vocab-size", "300"]) == 0
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    assert sp.get_piece_size() == 300
    text = "Il-kelb tiegħi jħobb il-baħar."
    assert sp.decode(sp.encode(text)) == text
    capsys.readouterr()
    assert main(["tokenizer", "fertility", "--model", str(tmp_path / "sp.model"), "--input", str(corpus)]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().err.splitlines() if line.count("│") > 4}
    assert set(rows) == {"eng", "mlt", "swa", "rus"}
