"""``run_batch(BatchConfig) -> BatchSummary``: verify, detect or sign many files into one results file.

The one driver both engines share: check the arguments (every user error before anything is
written), walk the inputs (``studio.batch.inputs``), read the results file and drop the files it
already holds (``studio.batch.store``: same path and sha256), run the rest on the local process
pool (``studio.batch.local``) or on Ray Data (``studio.batch.ray_engine``), and save the rows as
they come: a checkpoint every ``checkpoint_every`` files or ``checkpoint_seconds``, the merged
results file at the end and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from provenance import media
from provenance.errors import DhsError, InputError

from .inputs import collect_files
from .store import ResultStore, _pa
from .tasks import OPS, TaskSpec

ENGINES = ("local", "ray")


@dataclass
class BatchConfig:
    """One batch run (the CLI's ``dhstudio batch OP PATHS... --out R.parquet`` builds it)."""

    spec: TaskSpec
    """What to do to each file (the op and its options)."""
    paths: list
    """Files and folders (folders are walked)."""
    out: str | os.PathLike
    """The results file (``.parquet``); an existing one is resumed."""
    engine: str = "local"
    """local (a process pool) or ray (Ray Data)."""
    workers: int | None = None
    """Processes / Ray actors (default: this machine's CPUs; with ``address``: the cluster's)."""
    address: str | None = None
    """ray: an existing cluster's address (default: start a local one)."""
    out_dir: str | os.PathLike | None = None
    """sign: where the signed files go (the inputs' folder layout is kept)."""
    checkpoint_every: int = 100
    """Save the finished rows every N files..."""
    checkpoint_seconds: float = 60.0
    """...and at least this often."""
    retry_errors: bool = False
    """Run again the files whose row says error (default: skip them like the others)."""
    progress: bool = True
    """A progress bar on stderr (when it is a terminal)."""


@dataclass
class BatchSummary:
    op: str
    engine: str
    out: str
    files: int
    """Files found."""
    skipped: int
    """Already in the results (same path and sha256)."""
    processed: int = 0
    ok: int = 0
    errors: int = 0
    rows: int = 0
    """Rows in the results file now."""
    workers: int = 0
    seconds: float = 0.0
    """Wall time from starting the engine to the last row."""
    first_row_s: float | None = None
    """Wall time from starting the engine to the first row (start-up + one file)."""
    engine_info: dict = field(default_factory=dict)
    skipped_links: int = 0
    skipped_special: int = 0
    skipped_hidden: int = 0

    @property
    def files_per_s(self) -> float | None:
        return self.processed / self.seconds if self.processed and self.seconds > 0 else None


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_config(cfg: BatchConfig) -> None:
    """Every user error in the arguments, as one InputError, before anything is read or written."""
    op = cfg.spec.op
    if op not in OPS:
        raise InputError(f"unknown batch operation {op!r} (one of {', '.join(OPS)})")
    if cfg.engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")
    if cfg.workers is not None and cfg.workers < 1:
        raise InputError(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.checkpoint_every < 1 or not cfg.checkpoint_seconds > 0:
        raise InputError("--checkpoint-every must be >= 1 (and the checkpoint interval > 0 s)")
    if cfg.address and cfg.engine != "ray":
        raise InputError("--address names a Ray cluster: use it with --engine ray")
    out = Path(cfg.out)
    if out.suffix.lower() != ".parquet":
        raise InputError(f"--out {out}: the results file must end in .parquet")
    media.check_output_path(out)
    if op == "sign":
        if not cfg.out_dir:
            raise InputError("batch sign needs --out-dir DIR for the signed files")
        od = Path(cfg.out_dir)
        if od.exists() and not od.is_dir():
            raise InputError(f"--out-dir {od} exists and is not a folder", code="output.not_directory")
        if not od.exists() and not (od.parent if str(od.parent) else Path(".")).is_dir():
            raise InputError(f"--out-dir {od}: its parent folder does not exist", code="output.no_directory")
    elif cfg.out_dir:
        raise InputError("--out-dir is for batch sign only")
    if not cfg.paths:
        raise InputError("no PATHS given")


def _sign_targets(files: list[str], roots: dict[str, str], out_dir: Path) -> dict[str, str]:
    """file -> its signed output: OUT_DIR / (the file's path below the folder it was found in)."""
    dst_of, src_of = {}, {}
    for f in files:
        dst = os.path.abspath(os.path.join(out_dir, os.path.relpath(f, roots[f])))
        if dst in src_of:
            raise InputError(f"{src_of[dst]} and {f} would both be signed to {dst}: sign them in two batches "
                             "or into two --out-dir folders", code="input.duplicate_output")
        dst_of[f], src_of[dst] = dst, f
    return dst_of


def _prepare_driver(spec: TaskSpec, log) -> None:
    """What fails for every file alike fails here, once, as one line: bad weights, a missing or
    locked signing identity (created on first use, as `dhstudio sign` does)."""
    if spec.op == "detect" or (spec.op == "verify" and spec.content and spec.weights):
        if spec.weights:
            media.check_input_path(spec.weights)
        if spec.op == "detect":
            from detect.content import load_detector_cached

            load_detector_cached(spec.weights)
    if spec.op == "sign":
        from provenance import keys
        from provenance.errors import printable

        ident = keys.load_identity(passphrase=spec.passphrase, create=True)
        if getattr(ident, "created", False):
            log(f"dhstudio: notice: no signing identity found; created a local CA and signer in "
                f"{printable(keys.home_dir() / 'keys')}")


def _bar(total: int, desc: str, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="file", dynamic_ncols=True, file=sys.stderr)


def run_batch(cfg: BatchConfig, *, log=_stderr) -> BatchSummary:
    """Run the batch ``cfg`` (see the module docstring). User errors raise InputError / OutputError
    before anything is written; per-file problems are rows; an interrupt saves the rows done and
    goes on up."""
    check_config(cfg)
    spec = cfg.spec
    _pa()  # the batch extra, before any work
    if cfg.engine == "ray":
        from ._deps import require

        require("ray", "--engine ray")
    out = Path(cfg.out)
    store = ResultStore(out, spec.op, options=_options_meta(cfg))
    exclude = list(store.excluded_paths) + ([Path(cfg.out_dir)] if cfg.out_dir else [])
    found = collect_files(cfg.paths, exclude=exclude)
    items = [{"path": f} for f in found.files]
    if spec.op == "sign":
        dst_of = _sign_targets(found.files, found.roots, Path(cfg.out_dir))
        for it in items:
            it["dst"] = dst_of[it["path"]]
    done = store.open()
    try:
        todo = []
        for it in items:
            prev = done.get(it["path"])
            if prev is not None and prev[0] and (prev[1] == "ok" or not cfg.retry_errors):
                try:
                    same = media.sha256_file(it["path"]) == prev[0]
                except DhsError:
                    same = False
                if same:
                    continue
            todo.append(it)
        summary = BatchSummary(op=spec.op, engine=cfg.engine, out=str(out), files=len(items),
                               skipped=len(items) - len(todo), skipped_links=found.skipped_links,
                               skipped_special=found.skipped_special, skipped_hidden=found.skipped_hidden)
        if todo:
            if spec.op == "sign":
                Path(cfg.out_dir).mkdir(exist_ok=True)
            _prepare_driver(spec, log)
            _run(cfg, store, todo, summary, log)
        summary.rows = store.finalize()
        return summary
    finally:
        store.close()


def _options_meta(cfg: BatchConfig) -> dict:
    s = cfg.spec
    if s.op == "verify":
        return {"content": s.content, "weights": s.weights, "registry": s.registry,
                "default_anchors": s.use_default_anchors, "trust_anchors": s.trust_anchors is not None}
    if s.op == "detect":
        return {"weights": s.weights}
    g = s.generation
    return {"out_dir": os.path.abspath(cfg.out_dir) if cfg.out_dir else None, "watermark": s.watermark,
            "model": getattr(g, "model_name", None)}


def _run(cfg: BatchConfig, store: ResultStore, todo: list[dict], summary: BatchSummary, log) -> None:
    workers = cfg.workers
    if workers is None and not (cfg.engine == "ray" and cfg.address):
        workers = default_workers()
    if workers is not None:
        workers = min(workers, len(todo))
    summary.workers = workers or 0
    bar = _bar(len(todo), f"batch {cfg.spec.op}", cfg.progress)
    t0 = time.perf_counter()
    last_ckpt = time.monotonic()

    def on_row(row: dict) -> None:
        nonlocal last_ckpt
        if summary.first_row_s is None:
            summary.first_row_s = round(time.perf_counter() - t0, 3)
        store.add(row)
        summary.processed += 1
        if row.get("status") == "ok":
            summary.ok += 1
        else:
            summary.errors += 1
        if bar is not None:
            bar.update(1)
            if summary.errors:
                bar.set_postfix(errors=summary.errors, refresh=False)
        if len(store.pending) >= cfg.checkpoint_every or time.monotonic() - last_ckpt >= cfg.checkpoint_seconds:
            store.checkpoint()
            last_ckpt = time.monotonic()

    try:
        try:
            if cfg.engine == "ray":
                from .ray_engine import run_ray

                summary.engine_info = run_ray(todo, cfg.spec, workers, on_row, address=cfg.address, log=log)
                summary.workers = summary.engine_info.get("workers", summary.workers)
            else:
                from .local import run_local

                run_local(todo, cfg.spec, workers, on_row)
        finally:
            summary.seconds = round(time.perf_counter() - t0, 3)
            if bar is not None:
                bar.close()
    except Exception:  # the batch stopped on an error (a worker that cannot start): keep what is done
        _save_quietly(store)
        raise
    except BaseException:  # Ctrl-C, SIGTERM / SIGHUP (the CLI's Terminated)
        _save_on_interrupt(store, summary, log)
        raise


def _save_quietly(store: ResultStore) -> None:
    try:
        store.finalize()
    except BaseException:
        pass  # the checkpoint parts stay; the next run reads them


def _save_on_interrupt(store: ResultStore, summary: BatchSummary, log) -> None:
    _save_quietly(store)
    log(f"dhstudio: batch stopped: {summary.processed} file(s) done in this run are saved in {store.out}; "
        "run the same command again to go on")
