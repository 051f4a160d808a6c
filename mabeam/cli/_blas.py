"""One BLAS thread for the ``mabeam`` process, set before numpy loads (imported first).

The operator's solvers (the Fisher market's Newton steps) work on small matrices, where
OpenBLAS's threads only spin: 30 to 100 times slower on a busy machine (docs/benchmarks.md). A
setting already in the environment wins.
"""

from __future__ import annotations

import os

__all__: list[str] = []

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
