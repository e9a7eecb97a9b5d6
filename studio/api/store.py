"""What the web service keeps between requests and across restarts: jobs (with their reports) and
the API tokens of ``/v1/sign``.

One SQLite file by default (``DHSTUDIO_HOME/service.sqlite3``, WAL, busy timeout), or a PostgreSQL
database (``open_store("postgresql://...")``), both through ``provenance.db``. A job row holds
its state, progress, the Verdict JSON when it finished, the error when it failed, and the name of
its annotated file in the service's folder. A server that stops mid-queue leaves rows ``queued``
or ``running``: the next start marks them ``failed`` with the reason (their uploads were private
temporary files, gone with the process), so every job ends finished or failed with a clear state.

Tokens are stored hashed: ``dhs_<id>_<secret>``, the id in clear (to find the row and to revoke),
the secret's SHA-256 only (the secret is 256 random bits, so a plain hash is as strong as a slow
one and costs nothing per request); the comparison is constant-time. Scopes name what a token may
do (``sign``); a revoked token stays listed, refused.

"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from provenance import db

SCHEMA_VERSION = 1
TOKEN_PREFIX = "dhs_"
SCOPES = ("sign",)
JOB_STATES = ("queued", "running", "finished", "failed")

# SQLite-style SQL; provenance.db maps INTEGER, REAL and BLOB to PostgreSQL's 64-bit types
_SCHEMA = """
CREATE TABLE IF NOT EXISTS service_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    media_type TEXT,
    size INTEGER,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    result TEXT,
    annotated TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT,
    last_used TEXT
);
"""

_JOB_FIELDS = ("id", "kind", "media_type", "size", "state", "progress", "created", "started", "finished", "error",
               "result", "annotated")
_TOKEN_FIELDS = ("id", "name", "scopes", "created", "revoked", "last_used")


def default_path() -> Path:
    from provenance.keys import home_dir

    return home_dir() / "service.sqlite3"


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``dhs_<id>_<secret>`` -> (id, secret); None for anything else."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    rest = token[len(TOKEN_PREFIX):]
    tid, sep, secret = rest.partition("_")
    if not sep or len(tid) != 12 or not all(c in "0123456789abcdef" for c in tid) or len(secret) < 32:
        return None
    return tid, secret


class Store:
    """Jobs and tokens in one database: a SQLite file or a PostgreSQL URL (``open_store`` picks)."""

    def __init__(self, target: str | os.PathLike | None = None, *, timeout_s: float = 30.0):
        self.db = db.Database(target if target is not None else default_path(), what="service database",
                              timeout_s=timeout_s)
        self.path = self.db.path  # None on PostgreSQL
        self.timeout_s = timeout_s
        self.db.init_schema(_SCHEMA, meta="service_meta", version=SCHEMA_VERSION, kind="database")

    def _run(self, sql: str, args: tuple = (), *, fetch: str | None = None):
        with self.db.connect() as con:
            cur = con.execute(sql, args)
            if fetch == "one":
                return cur.fetchone()
            if fetch == "all":
                return cur.fetchall()
            return cur.rowcount

    # -- jobs -------------------------------------------------------------
    def add_job(self, job_id: str, *, kind: str, media_type: str | None, size: int | None,
                state: str = "queued", created: float | None = None) -> None:
        self._run("INSERT INTO jobs(id, kind, media_type, size, state, progress, created) VALUES(?, ?, ?, ?, ?, 0, ?)",
                  (job_id, kind, media_type, size, state, created if created is not None else time.time()))

    def update_job(self, job_id: str, **fields) -> None:
        """Set some of state, progress, started, finished, error, result, annotated."""
        bad = set(fields) - {"state", "progress", "started", "finished", "error", "result", "annotated"}
        if bad:
            raise ValueError(f"not job fields: {sorted(bad)}")
        if not fields:
            return
        if "result" in fields and fields["result"] is not None and not isinstance(fields["result"], str):
            fields["result"] = json.dumps(fields["result"], default=str)
        cols = ", ".join(f"{k}=?" for k in fields)
        self._run(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def get_job(self, job_id: str) -> dict | None:
        row = self._run(f"SELECT {', '.join(_JOB_FIELDS)} FROM jobs WHERE id=?", (job_id,), fetch="one")
        if row is None:
            return None
        d = dict(zip(_JOB_FIELDS, row))
        d["result"] = json.loads(d["result"]) if d["result"] else None
        return d

    def count_jobs(self) -> dict[str, int]:
        rows = self._run("SELECT state, COUNT(*) FROM jobs GROUP BY state", fetch="all")
        out = {s: 0 for s in JOB_STATES}
        out.update({s: int(n) for s, n in rows})
        return out

    def expire_jobs(self, finished_before: float) -> list[dict]:
        """Delete the jobs that ended before ``finished_before``; returns them (id, annotated)."""
        rows = self._run("SELECT id, annotated FROM jobs WHERE finished IS NOT NULL AND finished < ?",
                         (finished_before,), fetch="all")
        if rows:
            self._run("DELETE FROM jobs WHERE finished IS NOT NULL AND finished < ?", (finished_before,))
        return [{"id": r[0], "annotated": r[1]} for r in rows]

    def fail_unfinished(self, reason: str) -> int:
        """Jobs left queued or running by a server that stopped: failed, with ``reason``."""
        return self._run("UPDATE jobs SET state='failed', error=?, finished=? WHERE state IN ('queued', 'running')",
                         (reason, time.time()))

    # -- tokens -----------------------------------------------------------
    def create_token(self, name: str, scopes: tuple[str, ...] = ("sign",)) -> tuple[str, dict]:
        """A new token: (the token, shown once; its row without the secret)."""
        name = (name or "").strip()
        if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
            raise ValueError("a token needs a name of 1-100 printable characters")
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ValueError(f"unknown scope(s) {bad or scopes!r}; scopes: {', '.join(SCOPES)}")
        tid, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        self._run("INSERT INTO tokens(id, name, secret_sha256, scopes, created) VALUES(?, ?, ?, ?, ?)",
                  (tid, name, _sha256(secret), ",".join(sorted(set(scopes))), _now_iso()))
        return f"{TOKEN_PREFIX}{tid}_{secret}", self.get_token(tid)

    def get_token(self, token_id: str) -> dict | None:
        row = self._run(f"SELECT {', '.join(_TOKEN_FIELDS)} FROM tokens WHERE id=?", (token_id,), fetch="one")
        if row is None:
            return None
        d = dict(zip(_TOKEN_FIELDS, row))
        d["scopes"] = d["scopes"].split(",") if d["scopes"] else []
        return d

    def list_tokens(self) -> list[dict]:
        rows = self._run("SELECT id FROM tokens ORDER BY created, name, id", fetch="all")
        return [self.get_token(r[0]) for r in rows]

    def revoke_token(self, id_or_name: str) -> int:
        """Revoke by id or by name (every token of that name); the number revoked."""
        return self._run("UPDATE tokens SET revoked=? WHERE (id=? OR name=?) AND revoked IS NULL",
                         (_now_iso(), id_or_name, id_or_name))

    def check_token(self, token: str, scope: str) -> tuple[dict | None, str]:
        """(the token's row, "ok") when ``token`` is valid, not revoked and has ``scope``; else
        (row or None, why): "malformed", "unknown", "revoked", "scope"."""
        parsed = parse_token(token)
        if parsed is None:
            return None, "malformed"
        tid, secret = parsed
        row = self._run("SELECT secret_sha256, revoked, scopes FROM tokens WHERE id=?", (tid,), fetch="one")
        if row is None:
            hmac.compare_digest(_sha256(secret), "0" * 64)  # the same work as a known id
            return None, "unknown"
        if not hmac.compare_digest(_sha256(secret), row[0]):
            return None, "unknown"
        info = self.get_token(tid)
        if row[1] is not None:
            return info, "revoked"
        if scope not in (row[2] or "").split(","):
            return info, "scope"
        self._run("UPDATE tokens SET last_used=? WHERE id=?", (_now_iso(), tid))
        return info, "ok"


def open_store(target: str | os.PathLike | None = None) -> Store:
    """The service store at ``target``: a SQLite file path (default ``DHSTUDIO_HOME/service.sqlite3``)
    or a ``postgresql://`` URL."""
    return Store(target)
