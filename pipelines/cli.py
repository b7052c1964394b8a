"""The ``xlcorpus`` command.

    xlcorpus run CONFIG.yaml [--input GLOB ...] [--output DIR] [--overwrite | --incremental] [--set KEY=VALUE ...]
                 [Beam options]
    xlcorpus demo [--output DIR] [--overwrite] [Beam options]
    xlcorpus inspect DIR [--sample N [--lang L]] [--rejected REASON] [--open]
    xlcorpus lexicon build --input GLOB --lang L --out FILE
    xlcorpus lexicon distance --target FILE LANG=FILE ...
    xlcorpus tokenizer train|fertility --input GLOB ...
    xlcorpus etymology train|evaluate --data FILE --label-column COL ...
    xlcorpus models fetch

Arguments the command does not know are Beam pipeline options and pass through
untouched (``--runner``, ``--direct_running_mode=multi_processing``, Dataflow ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib.resources import files
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

console = Console(stderr=True)


def demo_config_path() -> Path:
    return Path(str(files("xlcorpus.pipelines") / "data" / "demo.yaml"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlcorpus", allow_abbrev=False,
                                     description="Build training corpora for low-resource languages with Beam.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", allow_abbrev=False, help="run a job from a YAML config",
                         epilog="Other --options are passed to Beam unchanged.")
    run.add_argument("config", help="YAML job configuration")
    demo = sub.add_parser("demo", allow_abbrev=False, help="run the job on the bundled multilingual sample",
                          epilog="Other --options are passed to Beam unchanged.")
    for p in (run, demo):
        p.add_argument("--input", action="append", help="input file or glob (repeatable; replaces input.paths)")
        p.add_argument("--output", help="output directory (replaces output.path)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
        p.add_argument("--incremental", action="store_true",
                       help="output.mode=incremental: process only input files that are new or changed since "
                            "the output's last run, and update the output in place")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set langid.keep=[mlt,swa] (value read as YAML)")
        p.add_argument("--no-progress", action="store_true",
                       help="no live progress table (it is shown only when stderr is a terminal)")
    demo.set_defaults(output_default="xlcorpus-demo")
    inspect = sub.add_parser("inspect", help="summarise a written dataset, print its rows, open its report")
    inspect.add_argument("dir")
    inspect.add_argument("--sample", type=int, default=0, metavar="N", help="print N kept rows (or N rejected)")
    inspect.add_argument("--lang", help="with --sample: only rows of this language (ISO 639-3)")
    inspect.add_argument("--rejected", metavar="REASON", help="print rejected rows of REASON (or STAGE:REASON)")
    inspect.add_argument("--open", action="store_true", help="write DIR/report.html and open it in a browser")
    lexicon = sub.add_parser("lexicon", help="target-language lexicons for the lexical-distance filter")
    lex = lexicon.add_subparsers(dest="lexicon_command", required=True)
    build = lex.add_parser("build", allow_abbrev=False, help="word-frequency lexicon from a reference corpus")
    build.add_argument("--input", action="append", required=True, help="file or glob (repeatable)")
    build.add_argument("--lang", required=True, help="the corpus' language (ISO 639-3), stored in the lexicon")
    build.add_argument("--out", required=True, help="Parquet file to write")
    build.add_argument("--text-field", default="text")
    build.add_argument("--lang-field", help="keep only records whose FIELD equals --lang")
    build.add_argument("--no-lowercase", action="store_true")
    build.add_argument("--fold-diacritics", action="store_true")
    build.add_argument("--romanize", action="store_true", help="romanize with uroman first (cross-script)")
    build.add_argument("--min-count", type=int, default=1)
    build.add_argument("--max-words", type=int)
    dist = lex.add_parser("distance", allow_abbrev=False, help="rank source languages by lexical distance")
    dist.add_argument("--target", required=True, help="the target language's lexicon")
    dist.add_argument("sources", nargs="+", metavar="LANG=LEXICON", help="candidate source lexicons")
    dist.add_argument("--out", help="also write the table as JSON")
    dist.add_argument("--top-n", type=int, default=2000, help="most frequent source words compared")
    tokenizer = sub.add_parser("tokenizer", help="SentencePiece tokenizer for fine-tuning")
    tok = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    tt = tok.add_parser("train", allow_abbrev=False, help="train a SentencePiece model on a corpus")
    tf = tok.add_parser("fertility", allow_abbrev=False, help="subword pieces per word and unknown rate, per language")
    for p in (tt, tf):
        p.add_argument("--input", action="append", required=True, help="file or glob (repeatable)")
        p.add_argument("--text-field", default="text")
    tt.add_argument("--out", required=True, help="output prefix: writes PREFIX.model and PREFIX.vocab")
    tt.add_argument("--vocab-size", type=int, default=8000)
    tt.add_argument("--model-type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    tt.add_argument("--character-coverage", type=float, default=0.9995)
    tt.add_argument("--sample-lines", type=int, default=1_000_000, help="seeded sample of a larger corpus")
    tt.add_argument("--seed", type=int, default=0)
    tf.add_argument("--model", required=True, help="SentencePiece .model (the fine-tuning model's own, or trained)")
    tf.add_argument("--lang-field", default="lang", help="record field holding the language")
    ft = sub.add_parser("finetune", allow_abbrev=False,
                        help="tensor-ready fine-tuning data: packed LM sequences or NER windows",
                        epilog="Other --options are passed to Beam unchanged.")
    ft.add_argument("config", nargs="?", help="YAML finetune configuration (or give everything as options)")
    ft.add_argument("--dataset", help="saved dataset directory (replaces input.dataset)")
    ft.add_argument("--input", action="append", help="raw file or glob, task lm (replaces input.paths)")
    ft.add_argument("--task", choices=["lm", "ner"])
    ft.add_argument("--tokenizer", help="SentencePiece .model (default: train one on the input)")
    ft.add_argument("--output", help="output directory (replaces output.path)")
    ft.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    ft.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set mix.temperature=0.3 (value read as YAML)")
    sub.add_parser("etymology", add_help=False, help="per-word origin classifier: train | evaluate (see --help)")
    _project_parser(sub)
    models = sub.add_parser("models", help="manage the bundled default models")
    models.add_argument("action", choices=["fetch"], help="fetch: put lid.176.ftz in the cache (idempotent)")
    return parser


def _project_parser(sub) -> None:
    pr = sub.add_parser("project", allow_abbrev=False, help="project NER labels through machine translation",
                        epilog="Other --options are passed to Beam unchanged.")
    pr.add_argument("--input", action="append", required=True,
                    help="CoNLL/IOB2 file, JSONL (text + spans) or HF dataset directory (repeatable, globs)")
    pr.add_argument("--format", default="auto", choices=["auto", "conll", "jsonl", "hf"])
    pr.add_argument("--model", required=True, help="CTranslate2 model directory (source -> target)")
    pr.add_argument("--sp-model", help="SentencePiece model (default: found in the model directory)")
    pr.add_argument("--convention", default="nllb", choices=["nllb", "m2m100", "marian"])
    pr.add_argument("--src-lang", help="nllb: eng_Latn; m2m100: en")
    pr.add_argument("--tgt-lang")
    pr.add_argument("--method", default="constrained", choices=["constrained", "marker", "alignment"])
    pr.add_argument("--mode", default="translate-train", choices=["translate-train", "translate-test"])
    pr.add_argument("--labels", help="comma-separated entity types (default: found in the input)")
    pr.add_argument("--reverse-model", help="translate-test: target -> source model (default: --model reversed)")
    pr.add_argument("--predictor", help="translate-test: module:function tagging source-language texts")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--compute-type", default="default")
    pr.add_argument("--beam-size", type=int, default=4)
    pr.add_argument("--max-batch-tokens", type=int, default=4096)
    pr.add_argument("--exhaustive", action="store_true", help="constrained: score every marker placement")
    pr.add_argument("--bounds", choices=["logits", "scores"],
                    help="constrained: branch bounds from next-token logits (default) or from scores only "
                         "(no vocabulary-sized transfers, for very large vocabularies)")
    pr.add_argument("--batch-tokens", type=int,
                    help="constrained: padded tokens per model call (default: 512 on CPU, max_batch_tokens on GPU)")
    pr.add_argument("--no-source-eos", action="store_true", help="do not append </s> to the source (models trained so)")
    pr.add_argument("--output", required=True)
    pr.add_argument("--overwrite", action="store_true")


def _project(args, beam_args: list[str]) -> int:
    from xlcorpus.pipelines.projection import run_from_args

    return run_from_args(args, beam_args, console)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["etymology"]:  # its own argument parser, in the training module
        from xlcorpus.pipelines.etymology import cli as etymology_cli

        return etymology_cli(argv[1:])
    args, beam_args = _parser().parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    # Beam's GCP module warns at import when the optional apitools is absent: not our concern.
    logging.getLogger().handlers[0].addFilter(lambda r: "apitools not found" not in r.getMessage())
    for noisy in ("apache_beam", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    unknown = [a for a in beam_args if not a.startswith("-")]
    if unknown:
        console.print(f"[red]error:[/] unexpected argument(s) {unknown}")
        return 2
    try:
        if args.command == "inspect":
            from xlcorpus.pipelines.inspect import inspect_output

            return inspect_output(args.dir, args.sample, args.lang, args.rejected, args.open, Console())
        if args.command == "lexicon":
            return _lexicon(args)
        if args.command == "tokenizer":
            return _tokenizer(args)
        if args.command == "finetune":
            return _finetune(args, beam_args)
        if args.command == "project":
            return _project(args, beam_args)
        if args.command == "models":
            from xlcorpus.transforms.backends.lid_model import fetch_default_model, installed_package_model

            path = installed_package_model() or fetch_default_model()
            print(path)
            return 0
        return _run(args, beam_args)
    except Exception as e:  # a clear one-line error, not a traceback, for user mistakes
        from xlcorpus.pipelines.config import ConfigError
        from xlcorpus.pipelines.run import OutputExistsError

        if isinstance(e, (ConfigError, OutputExistsError, FileNotFoundError, ValueError)):
            console.print(f"[red]error:[/] {e}")
            return 2
        raise


def _lexicon(args) -> int:
    from xlcorpus.pipelines import lexicon
    from xlcorpus.transforms.stages.lexfilter.score import format_distance_report

    if args.lexicon_command == "build":
        summary = lexicon.build(args.input, args.lang, args.out, text_field=args.text_field,
                                lang_field=args.lang_field, lowercase=not args.no_lowercase,
                                fold_diacritics=args.fold_diacritics, romanize=args.romanize,
                                min_count=args.min_count, max_words=args.max_words)
        console.print(f"{summary['out']}: {summary['words']} words from {summary['tokens']} tokens "
                      f"({summary['lang']}); most frequent: {', '.join(summary['top'])}")
        return 0
    sources = {}
    for item in args.sources:
        lang, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r}: expected LANG=LEXICON")
        sources[lang] = path
    print(format_distance_report(lexicon.distance(args.target, sources, args.out, args.top_n)))
    return 0


def _tokenizer(args) -> int:
    from xlcorpus.pipelines.lexicon import corpus_texts, corpus_texts_and_field
    from xlcorpus.transforms.stages.finetune import tokenizer as finetune
    from xlcorpus.transforms.stages.read.documents import ReaderOptions

    opts = ReaderOptions(text_field=args.text_field)
    if args.tokenizer_command == "train":
        model = finetune.train_tokenizer(corpus_texts(args.input, opts), args.out, vocab_size=args.vocab_size,
                                         model_type=args.model_type, character_coverage=args.character_coverage,
                                         sample_lines=args.sample_lines, seed=args.seed)
        console.print(f"wrote {model}")
        return 0
    import sentencepiece as spm

    texts, langs = corpus_texts_and_field(args.input, opts, args.lang_field)
    report = finetune.fertility_report(texts, [lang or "und" for lang in langs],
                                       spm.SentencePieceProcessor(model_file=args.model))
    table = Table(title=f"fertility of {args.model}")
    for col in ("lang", "words", "pieces", "pieces/word", "unknown"):
        table.add_column(col, justify="left" if col == "lang" else "right")
    for lang, r in sorted(report.items(), key=lambda kv: -kv[1]["fertility"]):
        table.add_row(lang, str(r["words"]), str(r["pieces"]), f"{r['fertility']:.2f}", f"{r['unk_rate']:.2%}")
    console.print(table)
    return 0


def _finetune(args, beam_args: list[str]) -> int:
    from xlcorpus.pipelines.config import load_config
    from xlcorpus.pipelines.finetune_config import FinetuneConfig
    from xlcorpus.pipelines.finetune import run_finetune

    data = {}
    for key, value in (("input", {"dataset": args.dataset} if args.dataset else None),
                       ("input", {"paths": args.input} if args.input else None), ("task", args.task),
                       ("tokenizer", {"model": args.tokenizer} if args.tokenizer else None),
                       ("output", {"path": args.output} if args.output else None)):
        if value is not None:
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    overrides = [f"{k}={v}" for k, v in _flatten(data)] + list(args.set)
    config = load_config(args.config, data={} if args.config is None else None, overrides=overrides,
                         model=FinetuneConfig)
    if args.overwrite:
        config.output.overwrite = True
    with console.status(f"running {config.name} ({config.task}) on Beam..."):
        report = run_finetune(config, beam_args)
    table = Table(title=f"xlcorpus finetune ({report['task']}) -> {config.output.path}")
    for col in ("lang", "rows before mix", "after mix", "pieces/word", "unknown", "sequences"):
        table.add_column(col, justify="left" if col == "lang" else "right")
    mix = report["mix"] or {}
    seqs = (report["packing"] or {}).get("per_language", {})
    for lang, f in report["fertility"].items():
        table.add_row(lang, str(mix.get("before", {}).get(lang, "")), str(mix.get("after", {}).get(lang, "")),
                      f"{f['fertility']:.2f}", f"{f['unk_rate']:.2%}", str(seqs.get(lang, {}).get("sequences", "")))
    console.print(table)
    acct = report["accounting"]
    extra = (f", packing efficiency {report['packing']['efficiency']:.4f}" if report["packing"]
             else f", {report['ner']['windows']} windows")
    console.print(f"{acct['in']} rows in, {acct['tokenized']} tokenized, {acct['rejected']} rejected, "
                  f"{acct['dead_letter']} dead-letter{extra}; rows per split {report['rows']}")
    return 0


def _flatten(data: dict, prefix: str = ""):
    """{"a": {"b": 1}} -> ("a.b", json) pairs, for --set style overrides."""
    for k, v in data.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", json.dumps(v)


def _run(args, beam_args: list[str]) -> int:
    from xlcorpus.pipelines.config import load_config
    from xlcorpus.pipelines.corpus import run_corpus

    config = load_config(demo_config_path() if args.command == "demo" else args.config, overrides=args.set)
    if args.input:
        config.input.paths = args.input
    if args.output or getattr(args, "output_default", None):
        config.output.path = args.output or args.output_default
    if args.overwrite:
        config.output.overwrite = True
    if args.incremental:
        config.output.mode = "incremental"
    if console.is_terminal and not args.no_progress:
        console.print(f"running {config.name} on Beam ({len(config.input.paths)} input pattern(s))")
        report = run_corpus(config, beam_args, progress=console)
    else:
        report = run_corpus(config, beam_args)
    if report.get("dry_run"):
        console.print(f"dry run on {report['runner']}: {len(report['transforms'])} transforms built, nothing "
                      f"submitted" + (f"; job spec: {report['job_file']}" if report["job_file"] else ""))
        return 0
    _summary(report, config.output.path)
    if args.command == "demo":
        _demo_projection(config.output.path, beam_args)
    return 0


DEMO_NER = "demo-ner-en.jsonl"  # English NER sample of the synthetic pair's demo split
REFERENCE_MT = "synth-en-xx"  # the project's own small en -> xx CTranslate2 model


def _demo_projection(out: str, beam_args: list[str]) -> None:
    """The demo's second job: project the bundled English NER sample into the synthetic
    language with the reference model (constrained decoding) -> OUT/projection."""
    from xlcorpus.pipelines.projection import ProjectionJob, run_projection
    from xlcorpus.transforms.backends.mt import MTOptions
    from xlcorpus.transforms.core.resources import shipped_dir
    from xlcorpus.transforms.stages.project.options import ProjectionOptions

    target = os.path.join(out, "projection")
    mt = MTOptions(str(shipped_dir("models") / REFERENCE_MT), "marian", source_eos=False)
    job = ProjectionJob(inputs=[str(demo_config_path().parent / DEMO_NER)], output=target, overwrite=True,
                        projection=ProjectionOptions(method="constrained", mode="translate-train", mt=mt))
    with console.status("projecting the English NER sample into the synthetic language..."):
        report = run_projection(job, beam_args)
    import datasets

    rows = datasets.load_from_disk(target)
    table = Table(title=f"label projection (constrained decoding, {REFERENCE_MT}) -> {target}")
    table.add_column("English (source)")
    table.add_column("projected")
    for row in rows.select(range(min(5, rows.num_rows))):
        table.add_row(_marked(row["src_text"], row["src_spans"]), _marked(row["text"], row["spans"]))
    console.print(table)
    a = report["accounting"]
    console.print(f"{a['in']} sentences: {a['kept']} projected, {a['rejected']} rejected "
                  f"({report['retention']['constrained']['rejected_by_reason']}), {a['dead_letter']} dead-letter")


def _marked(text: str, spans: list[dict]) -> str:
    """``text`` with each span shown as [words]LABEL (rich markup escaped)."""
    from rich.markup import escape

    out, at = [], 0
    for sp in sorted(spans or [], key=lambda s: s["start"]):
        out += [escape(text[at:sp["start"]]), f"[bold]\\[{escape(text[sp['start']:sp['end']])}][/]{sp['label']}"]
        at = sp["end"]
    return "".join(out + [escape(text[at:])])


def _incremental_line(inc: dict, out: str) -> str:
    if inc["nothing_to_do"]:
        return f"incremental: nothing new ({inc['unchanged']} file(s) unchanged); {out} left as it was"
    if inc["full_run"]:
        return f"incremental: a full run of {len(inc['processed'])} file(s) ({inc['full_reason']})"
    return (f"incremental: processed {len(inc['processed'])} file(s) ({len(inc['new'])} new, {len(inc['changed'])} "
            f"changed; {inc['rows_processed']} rows), {len(inc['removed'])} removed, {inc['unchanged']} unchanged kept")


def _summary(report: dict, out: str) -> None:
    table = Table(title=f"xlcorpus: {report['name']} -> {out}")
    for col in ("stage", "in", "kept", "rejected", "dead-letter"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in report["stages"]:
        table.add_row(s["stage"], str(s["in"]), str(s["kept"]), _reasons(s["rejected"]), _reasons(s["dead_letter"]))
    console.print(table)
    a = report["accounting"]
    langs = ", ".join(f"{k} {v}" for k, v in list(report["languages"].items())[:12])
    console.print(f"in {a['in']} = kept {a['kept']} + rejected {a['rejected']} + dead-letter {a['dead_letter']}"
                  f" ({'balanced' if a['balanced'] else 'UNBALANCED'}); {report['rows_per_second']:.0f} rows/s")
    console.print(f"splits: {report['splits']}; languages: {langs}")
    inc = report.get("incremental")
    if inc:
        console.print(_incremental_line(inc, out))
    lost = report.get("langid", {}).get("low_confidence_by_language")
    if lost:
        console.print("rows rejected under the LID threshold, by language: "
                      + ", ".join(f"{k} {v}" for k, v in list(lost.items())[:10]))
    if report.get("language_distances"):
        from xlcorpus.transforms.stages.lexfilter.score import format_distance_report

        console.print("lexical distance of candidate source languages to the target lexicon:")
        console.print(format_distance_report(report["language_distances"]), markup=False)
    dedup = report.get("dedup")
    if dedup:
        near = dedup.get("near", {})
        console.print(f"duplicates removed: {dedup['exact']['duplicates']} exact"
                      + (f", {near['near_duplicates']} near ({near['clusters']} clusters)" if near else ""))
    fmt = report.get("config", {}).get("output", {}).get("format", "arrow")
    load = (f"datasets.load_dataset('parquet', data_dir={str(out)!r})" if fmt == "parquet"
            else f"datasets.load_from_disk({str(out)!r})")
    console.print(f"load it: {load}; report: {out}/report.json; card: {out}/README.md")
    if report.get("annotate") is not None:
        a = report["annotate"]
        console.print(f"LLM annotation: {a.get('requests', 0)} requests, {a.get('retries', 0)} retries, "
                      f"{a.get('cache_hits', 0)} cache hits")
    elif "annotate" in report.get("config", {}):
        console.print("LLM annotation is off: point it at your server with --set annotate.enabled=true "
                      "--set annotate.model=NAME --set annotate.base_url=URL (see README, LLM annotation)")


def _reasons(counts: dict) -> str:
    total = sum(counts.values())
    return f"{total} ({', '.join(f'{k} {v}' for k, v in counts.items())})" if total else "0"


if __name__ == "__main__":
    sys.exit(main())
