"""``ProjectionOptions``: everything the projection stage needs, declared once (the
method and its knobs, the MT model, the translate-test reverse model and predictor)."""

from __future__ import annotations

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from xlcorpus.transforms.backends.mt import MTOptions
from xlcorpus.transforms.core.stage import StageOptions
from xlcorpus.transforms.stages.project.markers import iob2_names

METHODS = ("constrained", "marker", "alignment")
MODES = ("translate-train", "translate-test")


class ProjectionOptions(StageOptions):
    """Options of the ``project`` stage. ``model_dump()`` is the run report's
    ``projection`` section; the models (``mt``, ``reverse_mt``, ``predictor``) are
    reported under ``models`` instead, so they are excluded from it."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = Field(False, exclude=True)
    method: str = "constrained"
    mode: str = "translate-train"
    labels: tuple[str, ...] = ()  # entity types; IOB2 names are O, B-x, I-x in this order
    label_names: tuple[str, ...] = ()  # explicit IOB2 names (e.g. from an HF input's ClassLabel)
    open_marker: str = "["
    close_marker: str = "]"
    boundaries: str = "word"  # constrained/alignment target positions: word | piece
    exhaustive: bool = False  # constrained: score every placement (reference for the pruned search)
    score_chunk: int = 1  # constrained: placements scored per model request
    margin: float = 1e-3  # constrained: bounds within this of the best are still explored (float noise)
    # constrained: how a search node is bounded. "logits": the next-token log-probs along the
    # scored placement (exact branch log-probs; a vocabulary-sized row per position comes back);
    # "scores": score_batch only, each branch bounded by the mass the scored token left
    # (looser, but nothing vocabulary-sized: for very large vocabularies). Same answers.
    bounds: str = "logits"
    # constrained: padded tokens per scoring batch (sequences grouped by length). None: 512
    # on CPU (small batches are faster there), the model's max_batch_tokens on a GPU.
    batch_tokens: int | None = None
    fuzzy_threshold: float = 0.0  # marker: minimum rapidfuzz ratio of a fuzzy match (0-100)
    beam_size: int | None = None  # translation beam (default: the backend's)
    mt: MTOptions | None = Field(None, exclude=True, description="source -> target translation model")
    reverse_mt: MTOptions | None = Field(
        None, exclude=True, description="translate-test: target -> source model (default: mt reversed)")
    predictor: str | None = Field(
        None, exclude=True, description="translate-test: module:function tagging source-language texts")

    @field_validator("method", "mode")
    @classmethod
    def _one_of(cls, v: str, info: ValidationInfo) -> str:
        allowed = {"method": METHODS, "mode": MODES}[info.field_name]
        if v not in allowed:
            raise ValueError(f"projection.{info.field_name} must be one of {allowed}, got {v!r}")
        return v

    @field_validator("boundaries", "bounds")
    @classmethod
    def _either(cls, v: str, info: ValidationInfo) -> str:
        a, b = {"boundaries": ("word", "piece"), "bounds": ("logits", "scores")}[info.field_name]
        if v not in (a, b):
            raise ValueError(f"projection.{info.field_name} must be {a!r} or {b!r}, got {v!r}")
        return v

    @field_validator("batch_tokens")
    @classmethod
    def _batch_tokens(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("projection.batch_tokens must be >= 1")
        return v

    @field_validator("score_chunk")
    @classmethod
    def _score_chunk(cls, v: int) -> int:
        if v < 1:
            raise ValueError("projection.score_chunk must be >= 1")
        return v

    def iob2_names(self) -> list[str]:
        if self.label_names:
            return list(self.label_names)
        return iob2_names(self.labels)
