"""``ProjectLabels``, the ``project`` stage: NER_SCHEMA rows (text + labelled spans)
-> PROJECTION_SCHEMA rows in the other language, or rejected rows with a reason.
The translation models are loaded once per worker (``shared_model``); the work is
``Projector`` (``projector.py``)."""

from __future__ import annotations

import pyarrow as pa

from xlcorpus.schemas import PROJECTION_FIELDS
from xlcorpus.transforms.backends.mt import MTBackend
from xlcorpus.transforms.core.models import shared_model
from xlcorpus.transforms.core.stage import Stage, StageResult
from xlcorpus.transforms.stages.project.options import ProjectionOptions
from xlcorpus.transforms.stages.project.projector import STAGE, Projector, load_predictor, project_batch


class ProjectLabels(Stage[ProjectionOptions]):
    """Label projection with one method (constrained | marker | alignment). Its rows
    are not the input rows plus columns: ``fields`` (PROJECTION_FIELDS) replace the
    input's ``tokens``/``spans`` and drop ``meta`` (see PROJECTION_SCHEMA)."""

    name = STAGE
    Options = ProjectionOptions
    fields = PROJECTION_FIELDS
    dead_reason = "projection_error"
    fatal = (FileNotFoundError,)  # a missing model is a configuration mistake, not a bad row

    def __init__(self, options: ProjectionOptions | None = None, **context):
        super().__init__(options, **context)
        self.projector: Projector | None = None
        self.names: list[str] = []

    def check(self) -> None:
        o = self.options
        if o.mt is None:
            raise ValueError("projection.mt: no translation model given")
        if o.mode == "translate-test" and not o.predictor:
            raise ValueError("translate-test needs a predictor (module:function)")
        if o.predictor:
            load_predictor(o.predictor)  # fail on the driver, not on the workers

    def setup(self) -> None:
        o = self.options

        def load():
            fw = MTBackend(o.mt)
            rev = None
            if o.mode == "translate-test":
                rev = MTBackend(o.reverse_mt) if o.reverse_mt else fw.reversed()
            return fw, rev

        # one pair of models per worker for each (mt, reverse, mode)
        fw, rev = shared_model(f"mt:{(o.mt, o.reverse_mt, o.mode)!r}", load)
        pred = load_predictor(o.predictor) if o.predictor else None
        self.projector = Projector(o, fw, rev, pred)
        self.names = o.iob2_names()

    def process(self, batch: pa.RecordBatch) -> StageResult:
        return StageResult(*project_batch(batch, self.projector, self.names))

    def report(self) -> dict:
        o = self.options
        return {"mt": o.mt.model_dump() if o.mt else None,
                "reverse_mt": o.reverse_mt.model_dump() if o.reverse_mt else None, "predictor": o.predictor}
