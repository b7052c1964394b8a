"""The job configuration: YAML validated by pydantic.

Unknown keys are errors (a typo must not silently fall back to a default), and
every error names the key path and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_Strict = Strict


class InputConfig(_Strict):
    paths: list[str] = Field(default_factory=list, description="file paths or globs (local, gs://, s3://, ...)")
    format: Literal["auto", "jsonl", "text", "parquet"] = "auto"
    text_field: str = "text"
    id_field: str = "id"
    batch_size: int = Field(4096, ge=1, le=1_000_000)
    max_line_bytes: int = Field(1 << 20, ge=16)

    @field_validator("paths", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v


class OutputConfig(_Strict):
    path: str | None = None
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.9, "validation": 0.05, "test": 0.05})
    partition_by: Literal["lang"] | None = None
    max_rows_per_shard: int = Field(200_000, ge=1)
    overwrite: bool = False
    mode: Literal["overwrite", "incremental"] = Field(
        "overwrite", description="overwrite: every run processes every input file; incremental: only files "
                                 "that are new or changed since the output's last run (see pipelines/incremental.py)")
    license: str = Field("other", description="the dataset card's license (a Hub licence id, e.g. cc-by-4.0)")
    format: Literal["arrow", "parquet"] = Field(
        "arrow", description="arrow: save_to_disk layout (load_from_disk); parquet: data/<split>-*.parquet "
                             "(load_dataset('parquet', data_dir=DIR), the Hub's layout)")

    @field_validator("splits")
    @classmethod
    def _positive(cls, v: dict[str, float]):
        if not v or any(r < 0 for r in v.values()) or sum(v.values()) <= 0:
            raise ValueError(f"splits need non-negative ratios with a positive sum, got {v}")
        return v


def _stage_options() -> dict[str, type]:
    """Each registered stage's options model, in registry (default) order."""
    from xlcorpus.transforms import registry

    return {name: registry.stage_class(name).Options for name in registry.names()}


class _JobBase(_Strict):
    """The corpus job: ``input``, one section per registered stage, ``output``.

    ``stages`` lists the stages to run, in order (e.g. ``[langid, transliterate]``);
    when it is absent, the stages whose section says ``enabled: true`` run in the
    registry's order.
    """

    name: str = "xlcorpus"
    stages: list[str] | None = Field(None, description="stages to run, in order (default: the enabled ones)")
    input: InputConfig = Field(default_factory=InputConfig)

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, v: list[str] | None):
        if v is None:
            return v
        from xlcorpus.transforms import registry

        unknown = [s for s in v if s not in registry.STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; known: {registry.names()}")
        repeated = sorted({s for s in v if v.count(s) > 1})
        if repeated:
            raise ValueError(f"stage(s) listed twice: {repeated}")
        return v

    @model_validator(mode="after")
    def _enable_listed(self):
        if self.stages is not None:
            for name in _stage_options():
                section = getattr(self, name)
                wanted = name in self.stages
                if section.enabled != wanted:  # validate the section again as switched on/off
                    setattr(self, name, type(section).model_validate({**dict(section), "enabled": wanted}))
        if self.output.partition_by == "lang" and "langid" not in self.stage_names():
            raise ValueError("output.partition_by: 'lang' needs the langid stage")
        return self

    def stage_names(self) -> list[str]:
        """The stages this job runs, in order."""
        if self.stages is not None:
            return list(self.stages)
        return [name for name in _stage_options() if getattr(self, name).enabled]

    def resolve_paths(self, resolve) -> None:
        """Relative paths in a config file resolve against the file's folder."""
        self.input.paths = [resolve(p) for p in self.input.paths]
        for name in _stage_options():
            section = getattr(self, name)
            if hasattr(section, "resolve_paths"):
                section.resolve_paths(resolve)

    def dump(self) -> dict:
        """The config as JSON values, for the run report (``stages`` only when given)."""
        return self.model_dump(mode="json", exclude={"stages"} if self.stages is None else set())


def _job_config() -> type[_JobBase]:
    fields = {name: (options, Field(default_factory=options)) for name, options in _stage_options().items()}
    return create_model("JobConfig", __base__=_JobBase, __module__=__name__, **fields,
                        output=(OutputConfig, Field(default_factory=OutputConfig)))


JobConfig = _job_config()


class ConfigError(ValueError):
    pass


def _describe(e: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = err.get("input")
        lines.append(f"  {key}: {err['msg']}" + (f" (got {got!r})" if not isinstance(got, dict) else ""))
    return "\n".join(lines)


def apply_override(data: dict, assignment: str) -> None:
    """``section.key=VALUE`` (VALUE read as YAML: ``0.6``, ``[mlt, swa]``, ``true``)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. langid.threshold=0.6")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {part} is not a section")
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML: {e}") from None


def load_config(path: str | Path | None = None, data: dict | None = None, overrides: list[str] = (),
                model: type[Strict] | None = None):
    """From a YAML file (relative input paths resolve against the file's folder) or a
    dict, with ``section.key=value`` overrides applied before validation. ``model`` is
    the job's config class (JobConfig or FinetuneConfig)."""
    model = model or JobConfig
    source = str(path) if path else "<dict>"
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        config = model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from None
    if path is not None:
        base = Path(path).resolve().parent

        def resolve(p: str) -> str:
            return p if "://" in p or Path(p).is_absolute() else str(base / p)

        config.resolve_paths(resolve)
    return config
