"""Arrow schemas: the single source of truth for every column xlcorpus writes.

Each stage adds columns and never rewrites another stage's columns. Every field
carries metadata naming the stage that owns it (``xlcorpus.stage``), so a reader of
the dataset can tell where a column came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa

STAGE_KEY = b"xlcorpus.stage"


def owned(stage: str, *fields: pa.Field) -> tuple[pa.Field, ...]:
    """``fields`` with metadata naming the stage that owns them."""
    return tuple(f.with_metadata({STAGE_KEY: stage.encode()}) for f in fields)


# --- the document record (owned by the reader) --------------------------------
DOCUMENT_FIELDS = owned(
    "read",
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # input file path
    pa.field("line", pa.int64(), nullable=False),  # 1-based line (row index + 1 for Parquet)
    pa.field("offset", pa.int64(), nullable=False),  # byte offset of the line in the decompressed file
    pa.field("meta", pa.string()),  # remaining JSON fields of the record, as a JSON object string
)
DOCUMENT_SCHEMA = pa.schema(DOCUMENT_FIELDS)

# --- deduplication ------------------------------------------------------------------
DEDUP_FIELDS = owned(
    "dedup",
    pa.field("dup_copies", pa.int32()),  # rows with this normalised text in the input, itself included (exact on)
    pa.field("dup_cluster", pa.string()),  # near-duplicate cluster this row was kept for (null: none)
    pa.field("dup_cluster_size", pa.int32()),  # rows in that cluster, itself included
)

# --- language identification ---------------------------------------------------
LANG_CANDIDATE = pa.struct([("lang", pa.string()), ("script", pa.string()), ("score", pa.float32())])
LANGID_FIELDS = owned(
    "langid",
    pa.field("lang", pa.string()),  # ISO 639-3 ("zxx" when the text has no linguistic content)
    pa.field("lang_score", pa.float32()),  # model probability of `lang`; null when not predicted
    pa.field("lang_script", pa.string()),  # ISO 15924 script from the model label, when it has one
    pa.field("script", pa.string()),  # writing system of the text (ISO 15924; Jpan, Kore for Japanese, Korean)
    pa.field("lang_topk", pa.list_(LANG_CANDIDATE)),  # model's top-k candidates, best first
    pa.field("lang_script_override", pa.bool_()),  # true when a lower candidate won on script agreement
    pa.field("lang_script_mismatch", pa.bool_()),  # the language's usual script is not the text's (label kept)
)

# --- lexical-distance filter ------------------------------------------------------------
LEXFILTER_FIELDS = owned(
    "lexfilter",
    pa.field("lex_distance", pa.float32()),  # the chosen metric's score; null where the filter does not apply
    pa.field("lex_metric", pa.string()),  # levenshtein | ngram_cosine | ngram_out_of_place
)

# --- transliteration -----------------------------------------------------------------
SPAN = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string())])  # [start, end) chars
TRANSLIT_TOKEN = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("origin", pa.string()),
                            ("action", pa.string())])
TRANSLIT_OFFSET = pa.list_(pa.int32(), 4)  # (src_start, src_end, out_start, out_end)
TRANSLIT_FIELDS = owned(
    "transliterate",
    pa.field("translit_text", pa.string()),  # null where no policy applies to the row's language
    pa.field("translit_policy", pa.string()),
    pa.field("translit_tokens", pa.list_(TRANSLIT_TOKEN)),  # each word: its origin label and the action taken
    pa.field("translit_offsets", pa.list_(TRANSLIT_OFFSET)),  # where each piece of `text` went
    pa.field("translit_spans", pa.list_(SPAN)),  # the configured spans column, moved onto translit_text
)

# --- LLM-assisted annotation ----------------------------------------------------------
ANNOTATE_FIELDS = owned(
    "annotate",
    pa.field("annotation", pa.string()),  # the validated answer (JSON), with the offsets the stage found
    pa.field("annotation_spans", pa.list_(SPAN)),  # span tasks (ner): labelled spans on the annotated column
    pa.field("annotation_label", pa.string()),  # label tasks (classify): the chosen label
    pa.field("annotation_confidence", pa.float32()),  # share of samples agreeing with the answer (1.0 for one)
    pa.field("annotation_model", pa.string()),  # backend model id
    pa.field("annotation_task", pa.string()),
    pa.field("annotation_raw", pa.string()),  # JSON list of every model answer (stage, sample, repair), for audit
)

STAGE_FIELDS: dict[str, tuple[pa.Field, ...]] = {
    "langid": LANGID_FIELDS, "lexfilter": LEXFILTER_FIELDS, "transliterate": TRANSLIT_FIELDS}
STAGE_FIELDS["annotate"] = ANNOTATE_FIELDS
STAGE_FIELDS["dedup"] = DEDUP_FIELDS
STAGE_FIELDS["quality"] = ()  # the quality stage rejects rows and adds no column


def dataset_schema(stages: Iterable[str | Sequence[pa.Field]] = ("langid",)) -> pa.Schema:
    """Schema of kept rows after the given stages ran, in pipeline order: each item is
    a stage name declared here or the stage's own fields (``Stage.fields``)."""
    fields = list(DOCUMENT_FIELDS)
    for stage in stages:
        fields.extend(STAGE_FIELDS[stage] if isinstance(stage, str) else stage)
    return pa.schema(fields)


# --- fine-tuning outputs (xlcorpus finetune) -------------------------------------------
# Not stage columns added to documents: each row is a model input. LM rows are packed
# sequences (several documents each); NER rows are windows of one example.
def finetune_schema(task: str, width: int) -> pa.Schema:
    """Rows written by the fine-tuning job: ``task`` "lm" (width = seq_len) or "ner"
    (width = max_length). Fixed-size lists, so ``with_format("torch")`` stacks them."""
    def ids(name: str) -> pa.Field:
        return pa.field(name, pa.list_(pa.int32(), width))

    head = [pa.field("id", pa.string(), nullable=False), pa.field("source", pa.string(), nullable=False),
            pa.field("line", pa.int64(), nullable=False), pa.field("lang", pa.string())]
    if task == "lm":
        body = [ids("input_ids"), ids("attention_mask"), ids("labels")]  # labels: ids, -100 on padding
    elif task == "ner":
        body = [pa.field("tokens", pa.list_(pa.string())), pa.field("ner_tags", pa.list_(pa.int64())),
                pa.field("window", pa.int32()), ids("input_ids"), ids("attention_mask"),
                ids("labels"),  # label of a word's first piece, -100 elsewhere
                ids("word_ids")]  # word index of each piece in `tokens`, -1 for specials/padding
    else:
        raise ValueError(f"unknown fine-tuning task {task!r} (lm or ner)")
    return pa.schema(owned("finetune", *head, *body))


# --- NER inputs and label projection (xlcorpus project) ------------------------------
# An NER record is a document plus its words and labelled character spans on `text`.
NER_FIELDS = owned(
    "read_ner",
    pa.field("tokens", pa.list_(pa.string())),  # words of `text` (CoNLL/HF: as given; JSONL: tokenized)
    pa.field("spans", pa.list_(SPAN)),  # entities, [start, end) chars of `text`, label without B-/I-
)
NER_SCHEMA = pa.schema(list(DOCUMENT_FIELDS) + list(NER_FIELDS))

# A projected row is a new record in the other language: `text`, `tokens`, `ner_tags` and
# `spans` describe the projected sentence; the labelled original stays in src_*.
PROJECTION_FIELDS = owned(
    "project",
    pa.field("tokens", pa.list_(pa.string())),
    pa.field("ner_tags", pa.list_(pa.int64())),  # IOB2 ids; Sequence(ClassLabel) in the dataset features
    pa.field("spans", pa.list_(SPAN)),
    pa.field("method", pa.string()),  # constrained | marker | alignment
    pa.field("mode", pa.string()),  # translate-train | translate-test
    pa.field("src_text", pa.string()),
    pa.field("src_spans", pa.list_(SPAN)),
    pa.field("span_scores", pa.list_(pa.float32())),  # per span: the method's score (log-prob, similarity)
    pa.field("translation_score", pa.float32()),  # mean log-prob per token of the translation
    pa.field("model_calls", pa.int32()),  # sequences this row sent through the model
    pa.field("scored_candidates", pa.int32()),  # constrained: marker placements scored exactly
)
PROJECTION_SCHEMA = pa.schema(
    [f for f in DOCUMENT_FIELDS if f.name != "meta"] + list(PROJECTION_FIELDS))


# --- accounting -------------------------------------------------------------------
# A rejected row is a deliberate decision: the document plus who rejected it and why.
REJECTED_SCHEMA = pa.schema(
    list(DOCUMENT_FIELDS)
    + list(
        owned(
            "accounting",
            pa.field("stage", pa.string(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("detail", pa.string()),  # JSON object with the stage's evidence (e.g. the score)
        )
    )
)

# A dead-letter row could not be processed: the raw bytes are kept so nothing is lost.
DEAD_LETTER_SCHEMA = pa.schema(
    owned(
        "accounting",
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),  # human-readable message naming the field
        pa.field("source", pa.string(), nullable=False),
        pa.field("line", pa.int64()),
        pa.field("offset", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("raw", pa.binary()),  # the original bytes of the line / row
    )
)


def stage_of(field: pa.Field) -> str | None:
    """Which stage owns a column (None for columns xlcorpus did not declare)."""
    meta = field.metadata or {}
    value = meta.get(STAGE_KEY)
    return value.decode() if value else None


def output_features(schema: pa.Schema):
    """`datasets.Features` of an output written with ``schema``.

    Imported lazily: workers that only read and tag never need `datasets`.
    """
    import datasets

    return datasets.Features.from_arrow_schema(schema)
