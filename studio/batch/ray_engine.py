"""The Ray engine: the same files, rows and results file as the local engine, on Ray Data.

``ray.data.from_items(files)`` in blocks of a few files -> ``map_batches`` with a pool of
``workers`` actors (one CPU each; each builds one ``FileTask`` when it starts: identity, registry,
detector loaded once per actor) -> the rows stream back to the driver, which checkpoints them
into the results file exactly as the local engine's.

Without ``address`` a private local Ray instance is started (``num_cpus=workers``, no dashboard,
no usage stats, nothing reached over the network) and stopped at the end. With ``address`` (e.g.
``ray://head:10001`` or ``auto``) the batch runs on that existing cluster: every node then needs
dhstudio installed, the input paths readable under the same names, and, for ``sign``, the signing
identity and the registry (``DHSTUDIO_HOME`` on shared storage).

Ray is imported only here, only for ``--engine ray``; without it the error names the batch extra.
A block whose actor dies (a crash, out of memory) is given up, not retried (``max_restarts=0``,
``max_errored_blocks = -1``: a new actor takes the other blocks); its files get
``batch.worker_crashed`` error rows (``--retry-errors`` runs them again).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
import warnings

from provenance.errors import InputError

from ._deps import require
from .tasks import FileTask, TaskSpec, error_row

MAX_FILES_PER_BLOCK = 16


class _RayWorker:
    """One Ray Data actor: a FileTask built once, called on blocks of files."""

    def __init__(self, spec: TaskSpec, task_cls=FileTask):
        self._task, self._error = None, None
        try:
            self._task = task_cls(spec)
        except Exception as e:
            text = str(getattr(e, "message", None) or e).strip()
            self._error = f"a Ray batch worker could not start: {text.splitlines()[0] if text else type(e).__name__}"

    def __call__(self, batch):
        import pyarrow as pa

        items = batch.to_pylist()
        if self._task is None:
            rows = [json.dumps({"__init_error__": self._error})] * len(items)
        else:
            rows = [json.dumps(self._task(item), default=str) for item in items]
        return pa.table({"row": pa.array(rows, pa.string())})


def _restore(handlers: dict) -> None:
    for sig, h in handlers.items():
        if h is not None:
            try:
                signal.signal(sig, h)
            except (ValueError, OSError):  # not the main thread
                pass


def files_per_block(n: int, workers: int) -> int:
    """A few blocks per worker (load balance, progress), at most MAX_FILES_PER_BLOCK files each:
    Ray Data's cost per block (~tens of ms on a small machine) stays small beside the files'."""
    return max(1, min(MAX_FILES_PER_BLOCK, n // max(1, workers * 4)))


def run_ray(items: list[dict], spec: TaskSpec, workers: int | None, on_row, *, address: str | None = None,
            log=None, task_cls=FileTask) -> dict:
    """Process ``items`` on Ray Data; ``on_row(row)`` in the driver for each file as it finishes.
    Returns facts about the run: ``ray_init_s`` (start-up or connection), ``workers``.
    ``task_cls`` builds each actor's task (``FileTask``; tests give another)."""
    ray = require("ray", "--engine ray")
    require("ray.data", "--engine ray")
    import ray.data

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    started = False
    if not ray.is_initialized():
        kw = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        # ray.init puts its own SIGTERM handler (print a stack, exit) in place of the caller's: keep
        # the caller's, so SIGTERM unwinds like Ctrl-C and the rows done are saved
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(address="local", num_cpus=workers, **kw)
            _restore(handlers)
        except Exception as e:
            text = str(e).strip()
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise InputError(f"cannot start or reach {where}: {text.splitlines()[0] if text else type(e).__name__}",
                             code="batch.ray_unavailable") from None
        started = True
    info = {"ray_init_s": round(time.perf_counter() - t0, 3)}
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        info["workers"] = workers
        if log and address:
            log(f"Ray cluster at {address}: {int(ray.cluster_resources().get('CPU', 0))} CPUs, {workers} workers")
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours is the one bar
        ctx.max_errored_blocks = -1  # a block whose actor died is given up; its files get error rows
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        fpb = files_per_block(len(items), workers)
        ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / fpb))
        # max_restarts=0: a block whose actor dies is not retried (Ray Data's default retries it forever,
        # so one file that kills its worker would stall the batch); the pool starts a new actor and
        # goes on, and the block's files get error rows below. Ray 2.60 has no named parameter for
        # it yet, hence ray_remote_args and its deprecation warning silenced.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            ds = ds.map_batches(_RayWorker, fn_constructor_args=(spec, task_cls), batch_size=fpb,
                                batch_format="pyarrow",
                                # one block in flight per actor: an actor that dies takes only its
                                # own block with it, not the blocks queued behind it
                                compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
                                num_cpus=1, max_restarts=0)
        seen: set[str] = set()
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            for text in batch.column("row").to_pylist():
                row = json.loads(text)
                if "__init_error__" in row:
                    raise InputError(row["__init_error__"], code="batch.worker_init")
                seen.add(row["path"])
                on_row(row)
        for item in items:
            if item["path"] not in seen:
                on_row(error_row(item["path"], spec.op, "batch.worker_crashed",
                                 "the Ray worker died on this file's block (a crash or out of memory); "
                                 "--retry-errors runs it again"))
    finally:
        if started:
            ray.shutdown()
    return info
