"""The local engine: a pool of ``workers`` processes on this machine.

Each worker process (spawned, not forked: the driver may hold pyarrow's threads) builds one
``FileTask`` when it starts (identity, registry, detector loaded once; one torch thread) and then
takes files one at a time. Per-file problems come back as error rows. A worker that dies on a file
(a crash in a native decoder, the OOM killer) breaks the pool: the files that were in flight are
then run again one at a time in a fresh pool, and the one that kills its worker alone gets an
error row (``batch.worker_crashed``); the batch goes on.

Ctrl-C reaches only the driver (workers ignore SIGINT); on Ctrl-C / SIGTERM the driver terminates
the workers (a worker turns SIGTERM into SystemExit, so a publish in progress removes its work
folder) and the interrupt goes on up, to the runner, which saves the rows done.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .tasks import FileTask, TaskSpec, error_row

_TASK: FileTask | None = None
_INIT_ERROR: str | None = None


class WorkerInitError(Exception):
    """A worker could not set itself up (its one-line reason); the batch stops."""


def _on_term(signum, frame):
    raise SystemExit(128 + signum)


def _watch_driver(ppid: int) -> None:
    """A worker whose driver is gone (killed with SIGKILL) stops too: SIGTERM to itself, so the
    file in progress cleans up."""
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _init_worker(spec: TaskSpec, task_cls=FileTask) -> None:
    global _TASK, _INIT_ERROR
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    threading.Thread(target=_watch_driver, args=(os.getppid(),), daemon=True, name="batch-driver-watch").start()
    try:
        _TASK = task_cls(spec)
    except Exception as e:  # reported with the first file, as one line, by the driver
        text = str(getattr(e, "message", None) or e).strip()
        msg = text.splitlines()[0] if text else type(e).__name__
        _INIT_ERROR = f"a batch worker could not start: {msg}"


def _run_one(item: dict) -> dict:
    if _TASK is None:
        raise WorkerInitError(_INIT_ERROR or "a batch worker could not start")
    try:
        return _TASK(item)
    except SystemExit:  # SIGTERM from the driver: the file's clean-up has run, now go
        os._exit(128 + signal.SIGTERM)


def _stop(ex: ProcessPoolExecutor) -> None:
    procs = list((getattr(ex, "_processes", None) or {}).values())
    for p in procs:
        try:
            p.terminate()
        except Exception:
            pass
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        except Exception:
            pass


def run_local(items: list[dict], spec: TaskSpec, workers: int, on_row, *, task_cls=FileTask) -> None:
    """Process ``items`` with ``workers`` processes, calling ``on_row(row)`` in the driver for each
    file as it finishes (any order). ``task_cls`` builds each worker's task (``FileTask``; tests
    give another; it must be importable by name, the workers are spawned)."""
    ctx = multiprocessing.get_context("spawn")
    pending = deque(items)
    suspects: deque = deque()  # files in flight when a worker died: run again one at a time

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(spec, task_cls))

    ex = new_pool()
    inflight: dict = {}
    try:
        while pending or suspects or inflight:
            alone = bool(suspects)
            source, limit = (suspects, 1) if alone else (pending, 2 * workers)
            while source and len(inflight) < limit:
                item = source.popleft()
                inflight[ex.submit(_run_one, item)] = item
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for f in done:
                try:
                    row = f.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                except WorkerInitError as e:
                    from provenance.errors import InputError

                    raise InputError(str(e), code="batch.worker_init") from None
                inflight.pop(f)
                on_row(row)
            if broken:
                # every file still in flight went down with the pool
                wait(list(inflight))
                lost = []
                for f, item in inflight.items():
                    try:
                        on_row(f.result())
                    except BrokenProcessPool:
                        lost.append(item)
                inflight.clear()
                ex.shutdown(wait=True, cancel_futures=True)
                if alone and len(lost) == 1:
                    item = lost[0]
                    on_row(error_row(item["path"], spec.op, "batch.worker_crashed",
                                     "the worker process died on this file (a crash or out of memory)"))
                else:
                    suspects.extend(lost)
                ex = new_pool()
    except BaseException:
        _stop(ex)
        raise
    ex.shutdown(wait=True)
