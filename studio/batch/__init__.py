"""The batch engine: verify, detect or sign many files into one Parquet results file.

``dhstudio batch verify|detect|sign PATHS... --out results.parquet [--engine local|ray]
[--workers N]``; from Python, ``run_batch(BatchConfig(spec=TaskSpec(op="verify"), paths=[...],
out="results.parquet"))``. One row per file (``tasks``), the results written atomically and
checkpointed so a rerun goes on where an interrupted run stopped (``store``), on a local process
pool (``local``) or Ray Data (``ray_engine``: a local Ray instance or an existing cluster).

Importing this package is light: pyarrow, Ray and the verifier load when a batch runs.
"""

from .runner import BatchConfig, BatchSummary, run_batch
from .store import read_results
from .tasks import COLUMNS, OPS, TaskSpec

__all__ = ["BatchConfig", "BatchSummary", "COLUMNS", "OPS", "TaskSpec", "read_results", "run_batch"]
