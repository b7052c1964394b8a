"""The corpus job as a Beam "main program": ``python -m xlcorpus.pipelines.job --config=...``.

This is the form schedulers expect (Airflow's BeamRunPythonPipelineOperator runs
``python [py_options] py_file --key=value ...``): every option is a flag, and the
ones this job does not know are Beam pipeline options.

    python -m xlcorpus.pipelines.job --config=CONFIG.yaml [--output=DIR] [--input=GLOB]
        [--set=langid.keep=[mlt]] [--overwrite] [--runner=... any Beam option]

Without ``--config`` it runs the bundled demo configuration.
"""

from __future__ import annotations

import argparse
import sys

from xlcorpus.pipelines import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xlcorpus.pipelines.job", allow_abbrev=False)
    parser.add_argument("--config", help="YAML job configuration (default: the bundled demo)")
    args, rest = parser.parse_known_args(argv)
    return cli.main(["run", args.config] + rest if args.config else ["demo"] + rest)


if __name__ == "__main__":
    sys.exit(main())
