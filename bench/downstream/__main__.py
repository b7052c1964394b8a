"""``python -m bench.downstream``: the downstream benchmark (bench.downstream.harness)."""

import os
import sys
from pathlib import Path

# bench/tokenize.py would shadow the standard library's tokenize: keep bench/ off the path
here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() not in (here, here.parent)]
sys.path.insert(0, str(here.parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "2")

from bench.downstream.harness import main  # noqa: E402

sys.exit(main())
