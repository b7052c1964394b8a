"""The stage interface: options declared once, models loaded in ``setup``, and a
``process`` that turns one RecordBatch into kept / rejected / dead-letter batches.

A stage is plain Python (no Beam): unit tests and benchmarks call ``setup`` and
``process`` directly; ``xlcorpus.transforms.core.beam.StageTransform`` runs it in a
pipeline. Adding a stage is one module defining a ``Stage`` subclass plus one line in
``xlcorpus.transforms.registry``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Generic, NamedTuple, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict


class StageOptions(BaseModel):
    """A stage's options: the config section of the same name, validated by pydantic.

    Unknown keys are errors (a typo must not fall back to a default silently).
    ``enabled`` switches the stage on when the job's ``stages`` list is not given.
    """

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False


class StageResult(NamedTuple):
    """What ``Stage.process`` returns for one batch. ``stats`` are counters that the
    adapter adds to the run's Beam metrics under ``xlcorpus.<stage>``."""

    kept: pa.RecordBatch
    rejected: pa.RecordBatch | None = None
    dead_letter: pa.RecordBatch | None = None
    stats: Mapping[str, int] | None = None


O = TypeVar("O", bound=StageOptions)


class Stage(Generic[O]):
    """Base class of every stage.

    Class attributes:
      ``name``      the stage name used in config, reports and rejected/dead-letter rows;
      ``Options``   its pydantic options model;
      ``fields``    the columns it adds (from ``xlcorpus.schemas``);
      ``dead_reason`` the dead-letter reason for a row whose processing raised;
      ``fatal``     exception types that mean a configuration mistake: they fail the
                    run instead of turning rows into dead letters;
      ``retry_rows`` when a batch raises, retry it row by row so one bad row cannot
                    sink its neighbours (False: the whole batch becomes dead letters);
      ``report_counters`` copy the stage's Beam counters (``stats``) into the report;
      ``regroups``  its ``transform`` shuffles batches, so the sink must not rely on
                    their order.

    Instances are pickled with the pipeline, so ``__init__`` keeps only options;
    models are loaded in ``setup`` (once per worker process, through
    ``xlcorpus.transforms.core.models.shared_model``).
    """

    name: ClassVar[str]
    Options: ClassVar[type[StageOptions]] = StageOptions
    fields: ClassVar[tuple[pa.Field, ...]] = ()
    dead_reason: ClassVar[str] = "model_error"
    fatal: ClassVar[tuple[type[BaseException], ...]] = ()
    retry_rows: ClassVar[bool] = True
    dead_field: ClassVar[str] = "text"  # the column dead-letter messages name
    report_counters: ClassVar[bool] = False  # copy its Beam counters into the report under its name
    regroups: ClassVar[bool] = False  # its transform shuffles batches (they leave it in no fixed order)

    def __init__(self, options: O | None = None, **context):
        self.options: O = options if options is not None else self.Options()
        self.context = context  # job-level facts a stage may need (e.g. resolved model paths)

    def check(self) -> None:
        """Validate what can be validated on the driver (files exist, templates parse);
        called before the pipeline is built so a mistake fails in one line."""

    def setup(self) -> None:
        """Load models; called once per DoFn instance on the worker."""

    def process(self, batch: pa.RecordBatch) -> StageResult:
        raise NotImplementedError

    def teardown(self) -> None:
        """Release what ``setup`` opened (connections, caches)."""

    def report(self) -> dict:
        """This stage's entry under the run report's ``models`` (model paths and hashes,
        policies, endpoints); empty: no entry."""
        return {}

    def counters_report(self, counters: dict[str, int]) -> dict:
        """The report section of a ``report_counters`` stage, from its Beam counters."""
        return counters

    def report_sections(self) -> dict:
        """Extra top-level sections of the run report (e.g. lexfilter's language distances)."""
        return {}

    def transform(self):
        """The Beam transform for this stage: the generic adapter unless a stage needs
        more than a batch at a time (a global cut, a grouping); such stages override it."""
        from xlcorpus.transforms.core.beam import StageTransform

        return StageTransform(self)
