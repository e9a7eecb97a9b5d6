"""The one small SQL layer under dhstudio's stores (the registry, the web service's jobs).

A store is opened from a *target*: a filesystem path (SQLite, the embedded default: WAL mode and
a busy timeout, so several processes can write at once) or a ``postgresql://`` / ``postgres://``
URL (PostgreSQL through psycopg 3, imported only then; ``pip install 'dhstudio[service]'``).

The stores write their SQL once, in the dialect both servers accept, and this module bridges the
few differences:

- parameters are written ``?``; on PostgreSQL they become ``%s``;
- in PostgreSQL DDL ``BLOB`` becomes ``BYTEA``, ``INTEGER`` ``BIGINT`` and ``REAL`` ``DOUBLE
  PRECISION``, so the types mean the same on both: 64-bit integers (48-bit watermark ids need
  that) and 64-bit floats (PostgreSQL's REAL is 32-bit: a Unix time would lose minutes);
- upserts are ``INSERT ... ON CONFLICT (...) DO UPDATE / DO NOTHING`` (both servers accept it;
  ``INSERT OR IGNORE`` is SQLite only, do not use it);
- a uniqueness violation raises :class:`UniqueViolation` whatever the backend, and every other
  database error a :class:`DatabaseError` with a one-line message naming the store.

Each :meth:`Database.connect` opens a fresh connection in autocommit mode (one statement, one
transaction); :meth:`Connection.transaction` groups statements and takes the write lock at once.
Connections are cheap to open here and never shared between threads or processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import zlib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from provenance.errors import RegistryError

URL_SCHEMES = ("postgresql://", "postgres://")


class DatabaseError(RegistryError):
    """A database could not be opened, read or written (one line, names the store).

    ``reason`` is the backend's own message alone (one line), for callers that add context."""

    code = "db.error"

    def __init__(self, message: str, *, code: str | None = None, reason: str | None = None):
        super().__init__(message, code=code)
        self.reason = reason if reason is not None else message


class UniqueViolation(DatabaseError):
    """An INSERT or UPDATE broke a PRIMARY KEY / UNIQUE constraint (same type on both backends)."""

    code = "db.unique_violation"


def is_url(target) -> bool:
    """True when ``target`` names a PostgreSQL server rather than a SQLite file."""
    return isinstance(target, str) and target.lower().startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return url.split("://", 1)[0] + "://..."


def one_line(msg, limit: int = 300) -> str:
    s = "; ".join(line.strip() for line in str(msg).splitlines() if line.strip())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _psycopg():
    try:
        import psycopg
    except ImportError as e:
        raise DatabaseError(
            f"PostgreSQL storage needs psycopg 3 ({e}); install the service extra: pip install 'dhstudio[service]'",
            code="db.missing_driver",
        ) from None
    return psycopg


_DDL_WORDS = re.compile(r"\b(BLOB|INTEGER|REAL)\b", re.IGNORECASE)
_PG_TYPES = {"BLOB": "BYTEA", "INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION"}


def to_postgres(sql: str, *, has_params: bool) -> str:
    """SQLite-style SQL as PostgreSQL wants it: ``?`` -> ``%s`` and ``%`` -> ``%%`` outside string
    literals when there are parameters, and the SQLite type names as above."""
    out = []
    for part in re.split(r"('(?:[^']|'')*')", sql):
        quoted = part.startswith("'") and part.endswith("'") and len(part) >= 2
        if not quoted:
            part = _DDL_WORDS.sub(lambda m: _PG_TYPES[m.group(1).upper()], part)
        if has_params:
            part = part.replace("%", "%%")
            if not quoted:
                part = part.replace("?", "%s")
        out.append(part)
    return "".join(out)


class Connection:
    """One open connection; ``execute`` takes SQLite-style SQL on both backends."""

    def __init__(self, db: "Database", raw):
        self.db, self.raw = db, raw
        self.postgres = db.postgres

    def execute(self, sql: str, params=()):
        """Run one statement; returns a cursor (``fetchone`` / ``fetchall`` / ``rowcount``)."""
        if self.postgres:
            sql = to_postgres(sql, has_params=bool(params))
        with self.db.errors():
            if self.postgres:
                return self.raw.execute(sql, tuple(params) if params else None)
            return self.raw.execute(sql, tuple(params))

    def executescript(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters (schema set-up; the split is
        naive, so no ``;`` inside string literals). Unlike sqlite3's own executescript it never
        commits, so it can run inside :meth:`transaction`."""
        for statement in sql.split(";"):
            if statement.strip():
                self.execute(statement)

    @contextlib.contextmanager
    def transaction(self, *, lock: str | None = None):
        """Group statements: committed when the block ends, rolled back if it raises.

        On SQLite the write lock is taken at BEGIN (``BEGIN IMMEDIATE``), so transactions of
        several processes run one after the other. On PostgreSQL ``lock`` names an advisory lock
        held to the end of the transaction (schema set-up and migrations use one, so two
        processes opening a new database never race on CREATE TABLE).
        """
        if self.postgres:
            with self.db.errors(), self.raw.transaction():
                if lock:
                    self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(lock.encode()),))
                yield self
            return
        self.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.raw.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def columns(self, table: str) -> set[str]:
        """The column names of ``table`` (empty when it does not exist)."""
        if self.postgres:
            rows = self.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ?", (table,)).fetchall()
        else:
            rows = [(r[1],) for r in self.execute(f"PRAGMA table_info({table})").fetchall()]
        return {r[0] for r in rows}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


class Database:
    """Where a store lives: ``Database(path)`` for SQLite, ``Database("postgresql://...")``.

    ``what`` names the store in messages (``"registry"``, ``"job store"``). Nothing is opened until
    :meth:`connect`.
    """

    def __init__(self, target: str | os.PathLike, *, what: str = "database", timeout_s: float = 30.0):
        self.what, self.timeout_s = what, timeout_s
        self.postgres = is_url(target)
        if self.postgres:
            self.url, self.path = str(target), None
            self.name = redact(self.url)
        else:
            self.url, self.path = None, Path(target)
            self.name = str(self.path)
            if self.name.lower().startswith(("postgresql:/", "postgres:/")):  # a URL squashed by Path()
                raise DatabaseError(f"{what} {self.name}: pass a PostgreSQL URL as a string, not a path")
            if self.path.is_dir():
                raise DatabaseError(f"{what} path {self.path} is a directory")

    @property
    def backend(self) -> str:
        return "postgresql" if self.postgres else "sqlite"

    @contextlib.contextmanager
    def errors(self):
        """Backend errors -> :class:`UniqueViolation` / :class:`DatabaseError` (one line)."""
        try:
            yield
        except DatabaseError:
            raise
        except Exception as e:
            if isinstance(e, sqlite3.Error):
                unique = isinstance(e, sqlite3.IntegrityError) and ("UNIQUE" in str(e) or "PRIMARY KEY" in str(e))
            elif self.postgres and isinstance(e, _psycopg().Error):
                unique = isinstance(e, _psycopg().errors.UniqueViolation)
            else:
                raise
            cls = UniqueViolation if unique else DatabaseError
            raise cls(f"{self.what} {self.name}: {one_line(e)}", reason=one_line(e)) from None

    def _open(self):
        if self.postgres:
            psycopg = _psycopg()
            kwargs = {"autocommit": True}
            if "connect_timeout" not in self.url:
                kwargs["connect_timeout"] = max(1, int(self.timeout_s))
            try:
                return psycopg.connect(self.url, **kwargs)
            except (psycopg.Error, ValueError) as e:
                raise DatabaseError(f"cannot connect to the {self.what} at {self.name}: {one_line(e)}",
                                    code="db.unreachable", reason=one_line(e)) from None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            return con
        except (OSError, sqlite3.Error) as e:
            reason = one_line(e.strerror if isinstance(e, OSError) and e.strerror else e)
            raise DatabaseError(f"cannot open the {self.what} {self.name}: {reason}",
                                code="db.unreachable", reason=reason) from None

    @contextlib.contextmanager
    def connect(self):
        """A fresh :class:`Connection` (autocommit), closed when the block ends."""
        con = Connection(self, self._open())
        try:
            yield con
        finally:
            con.close()

    def set_wal(self, con: Connection) -> None:
        """SQLite: write-ahead log, so readers never block the writer (no-op on PostgreSQL)."""
        if not self.postgres:
            con.execute("PRAGMA journal_mode=WAL")

    def init_schema(self, tables: str, *, meta: str, version: int, kind: str, migrate=None) -> None:
        """Create ``tables`` (idempotent SQL) and the ``schema`` row of the ``meta`` table under one
        lock; refuse a database whose schema is newer than ``version``; call ``migrate(con,
        stored_version)`` (it runs every time: idempotent steps) and record ``version``. A SQLite
        file that is not a database is one RegistryError: "... is corrupt or not a dhstudio
        ``kind``"."""
        try:
            with self.connect() as con:
                self.set_wal(con)
                with con.transaction(lock=f"dhstudio.{meta}.schema"):
                    con.executescript(tables)
                    con.execute(f"INSERT INTO {meta}(key, value) VALUES('schema', ?) ON CONFLICT(key) DO NOTHING",
                                (str(version),))
                    row = con.execute(f"SELECT value FROM {meta} WHERE key='schema'").fetchone()
                    stored = int(row[0]) if row and str(row[0]).isdigit() else None
                    if stored is None or stored > version:
                        raise RegistryError(f"{self.what} {self.name} has schema {row and row[0]}, "
                                            f"newer than this dhstudio ({version})")
                    if migrate is not None:
                        migrate(con, stored)
                    if stored < version:
                        con.execute(f"UPDATE {meta} SET value=? WHERE key='schema'", (str(version),))
        except DatabaseError as e:
            if self.postgres or e.code == "db.unreachable":
                raise
            raise RegistryError(f"{self.what} {self.name} is corrupt or not a dhstudio {kind} ({e.reason}); "
                                "move it aside to start a new one") from None
