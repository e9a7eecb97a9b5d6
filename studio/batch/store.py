"""The results of a batch: one Parquet file, written atomically, checkpointed, resumable.

``results.parquet`` holds one row per file (the columns of ``studio.batch.tasks.COLUMNS``), sorted
by path, with the batch's op and schema version in the file's metadata (key ``dhstudio.batch``).
It is only ever replaced whole, through ``provenance.media.atomic_target`` (temp file in the same
folder, fsync, rename): a reader never sees half a file.

While a batch runs, finished rows are checkpointed every N files (and every so many seconds) as
small Parquet parts in ``.results.parquet.checkpoint/`` beside it, each written atomically too, so
a checkpoint costs the new rows only, not a rewrite of everything done so far. At the end, and on
Ctrl-C / SIGTERM, the parts are merged into ``results.parquet`` (one atomic replace) and removed.
A batch killed outright (SIGKILL, power loss) leaves its parts; the next run reads them with the
results file, so it loses at most the rows since the last checkpoint.

Resume rule: a file whose (path, sha256) already has a row is skipped (rows with status
``error`` too, unless ``retry_errors``). A changed file (same path, new sha256) is processed again
and its new row replaces the old one: one row per path.

A results file that cannot be read as a dhstudio batch file is an InputError
(``batch.bad_output``), raised before anything is written; so is one holding another op's rows.
A second batch writing the same results file at the same time is refused (a lock file
``.results.parquet.lock`` beside it, kept).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from provenance import media
from provenance.errors import InputError

from ._deps import require
from .tasks import COLUMNS

SCHEMA_VERSION = "dhstudio.batch/1"
META_KEY = b"dhstudio.batch"


def _pa():
    require("pyarrow.parquet", "dhstudio batch (its Parquet results)")
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def arrow_schema(meta: dict | None = None):
    pa, _ = _pa()
    kinds = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "list[str]": pa.list_(pa.string())}
    schema = pa.schema([pa.field(name, kinds[kind]) for name, kind in COLUMNS.items()])
    return schema.with_metadata({META_KEY: json.dumps(meta or {}).encode()}) if meta is not None else schema


def rows_to_table(rows: list[dict], meta: dict | None = None):
    pa, _ = _pa()
    schema = arrow_schema(meta)
    cols = {name: [r.get(name) for r in rows] for name in COLUMNS}
    return pa.Table.from_pydict(cols, schema=schema)


def read_results(path: str | os.PathLike):
    """The rows of a results file as a list of dicts (for tests and scripts)."""
    _, pq = _pa()
    return pq.read_table(path).to_pylist()


class ResultStore:
    """The results file of one batch run (see the module docstring).

    ``open()`` (locks, reads what is there, returns ``{path: (sha256, status)}``), ``add(row)``,
    ``checkpoint()``, ``finalize()`` (merge into the results file), ``close()`` (unlock).
    """

    def __init__(self, out: str | os.PathLike, op: str, *, options: dict | None = None):
        self.out = Path(out)
        self.op = op
        self.options = dict(options or {})
        self.checkpoint_dir = self.out.parent / f".{self.out.name}.checkpoint"
        self.lock_path = self.out.parent / f".{self.out.name}.lock"
        self.pending: list[dict] = []
        self.rows_saved = 0
        self._lock_fd: int | None = None
        self._seq = 0

    @property
    def excluded_paths(self) -> list[Path]:
        """What a walk of the inputs must never take: this store's own files."""
        return [self.out, self.checkpoint_dir, self.lock_path]

    # -- reading ------------------------------------------------------------------------------

    def _meta(self) -> dict:
        return {"schema": SCHEMA_VERSION, "op": self.op, "options": self.options}

    def _bad(self, what: Path, why: str) -> InputError:
        return InputError(f"{what}: {why}; nothing was overwritten: move it away or choose another --out",
                          code="batch.bad_output")

    def _read_table(self, path: Path, columns=None):
        pa, pq = _pa()
        try:
            pf = pq.ParquetFile(path)
            raw = (pf.schema_arrow.metadata or {}).get(META_KEY)
        except (pa.ArrowException, OSError, ValueError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise self._bad(path, f"not a readable Parquet file ({msg})") from None
        if raw is None:
            raise self._bad(path, "a Parquet file, but not dhstudio batch results (no dhstudio.batch metadata)")
        try:
            meta = json.loads(raw)
        except ValueError:
            raise self._bad(path, "its dhstudio.batch metadata is not JSON") from None
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA_VERSION:
            raise self._bad(path, f"batch results of schema {meta.get('schema') if isinstance(meta, dict) else None!r}; "
                                  f"this dhstudio reads {SCHEMA_VERSION}")
        if meta.get("op") != self.op:
            raise InputError(f"{self.out} holds `batch {meta.get('op')}` results; this is `batch {self.op}`: "
                             "choose another --out", code="batch.bad_output")
        missing = [c for c in ("path", "sha256", "status") if c not in pf.schema_arrow.names]
        if missing:
            raise self._bad(path, f"no {', '.join(missing)} column")
        try:
            table = pf.read(columns=columns)
        except (pa.ArrowException, OSError, ValueError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise self._bad(path, f"cannot be read ({msg})") from None
        return table

    def _parts(self) -> list[Path]:
        try:
            return sorted(p for p in self.checkpoint_dir.iterdir()
                          if p.name.startswith("part-") and p.suffix == ".parquet")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise InputError(f"cannot read {self.checkpoint_dir}: {e.strerror}", code="batch.bad_output") from None

    def _sources(self) -> list[Path]:
        return ([self.out] if self.out.exists() else []) + self._parts()

    def open(self) -> dict[str, tuple[str | None, str]]:
        """Lock the results file and read what is done: ``{path: (sha256, status)}``. A bad
        results file is refused before anything (the lock file included) is created."""
        _pa()
        import fcntl

        self._done()

        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise InputError(f"cannot write in {self.out.parent}: {e.strerror}", code="output.unwritable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InputError(f"another dhstudio batch is writing {self.out} (lock {self.lock_path.name})",
                             code="batch.locked") from None
        self._lock_fd = fd
        try:
            return self._done()  # again: another run may have finished in between
        except BaseException:
            self.close()
            raise

    def _done(self) -> dict[str, tuple[str | None, str]]:
        done: dict[str, tuple[str | None, str]] = {}
        for src in self._sources():
            t = self._read_table(src, columns=["path", "sha256", "status"])
            for p, s, st in zip(t.column("path").to_pylist(), t.column("sha256").to_pylist(),
                                t.column("status").to_pylist()):
                done[p] = (s, st)
        return done

    # -- writing ------------------------------------------------------------------------------

    def add(self, row: dict) -> None:
        self.pending.append(row)

    def checkpoint(self) -> None:
        """Write the pending rows as one new part (atomically); nothing to do when none are pending."""
        if not self.pending:
            return
        _, pq = _pa()
        table = rows_to_table(self.pending, self._meta())
        try:
            self.checkpoint_dir.mkdir(exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot write {self.checkpoint_dir}: {e.strerror}", code="output.unwritable") from None
        self._seq += 1
        part = self.checkpoint_dir / f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"
        with media.atomic_target(part) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        self.rows_saved += len(self.pending)
        self.pending = []

    def _conform(self, table):
        pa, _ = _pa()
        schema = arrow_schema()
        cols = []
        for f in schema:
            if f.name in table.column_names:
                cols.append(table.column(f.name).cast(f.type))
            else:
                cols.append(pa.nulls(table.num_rows, f.type))
        return pa.Table.from_arrays(cols, schema=schema)

    def finalize(self) -> int:
        """Checkpoint what is pending, then merge the results file and every part into a new
        results file (one row per path, the newest; sorted by path), replace it atomically and
        remove the parts. Returns the number of rows."""
        pa, pq = _pa()
        self.checkpoint()
        parts = self._parts()
        if not parts and self.out.exists():
            return pq.ParquetFile(self.out).metadata.num_rows
        tables = [self._conform(self._read_table(src)) for src in self._sources()]
        table = pa.concat_tables(tables) if tables else rows_to_table([])
        last: dict[str, int] = {}
        for i, p in enumerate(table.column("path").to_pylist()):
            last[p] = i
        table = table.take(sorted(last.values())).sort_by("path")
        table = table.replace_schema_metadata({META_KEY: json.dumps(self._meta()).encode()})
        with media.atomic_target(self.out) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        for p in parts:
            try:
                p.unlink()
            except OSError:
                pass
        try:
            for p in self.checkpoint_dir.iterdir():  # temp files of a killed checkpoint
                if p.name.startswith(".part-"):
                    p.unlink()
            self.checkpoint_dir.rmdir()
        except OSError:
            pass
        return table.num_rows

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
