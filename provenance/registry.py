"""Registry: watermark id -> manifest store, so provenance survives stripping.

When a platform strips the C2PA manifest (re-encode, resize), the invisible
watermark still carries a 48-bit id. The registry maps that id back to the
manifest store we signed, which is what C2PA calls soft-binding resolution.

Storage goes through :mod:`provenance.db`: a SQLite file (the default, one file
in ``DHSTUDIO_HOME``, WAL mode with a busy timeout, so several signing processes
can write at once) or a PostgreSQL server (``Registry("postgresql://...")``).
Ids are drawn at random from the 48-bit space and inserted with a uniqueness
constraint, so two writers can never hand out the same id.

Schema 2 added ``manifest_id`` (the active C2PA manifest label); a schema-1
SQLite file is migrated in place the first time it is opened.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from provenance import db
from provenance.errors import RegistryError
from provenance.media import wm_id_hex

ID_BITS = 48
SCHEMA_VERSION = 2

# SQLite-style SQL; provenance.db turns INTEGER into BIGINT and BLOB into BYTEA on PostgreSQL
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    wm_id INTEGER PRIMARY KEY,
    reserved_at TEXT NOT NULL,
    registered_at TEXT,
    manifest BLOB,
    asset_sha256 TEXT,
    media_type TEXT,
    signer TEXT,
    label TEXT,
    manifest_id TEXT
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS records_sha ON records(asset_sha256);
CREATE INDEX IF NOT EXISTS records_manifest_id ON records(manifest_id);
"""
_COLUMNS = "wm_id, manifest, asset_sha256, media_type, signer, registered_at, label, manifest_id"


@dataclass
class Record:
    """One registered asset."""

    wm_id: int
    manifest: bytes | None
    asset_sha256: str | None
    media_type: str | None
    signer: str | None
    registered_at: str | None
    label: str | None = None
    manifest_id: str | None = None

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("manifest")
        d["manifest_bytes"] = len(self.manifest) if self.manifest else 0
        d["wm_id_hex"] = wm_id_hex(self.wm_id)
        return d


def default_path() -> Path:
    from provenance.keys import home_dir

    return home_dir() / "registry.sqlite3"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Registry:
    """The registry. ``Registry()`` opens the default SQLite file in DHSTUDIO_HOME,
    ``Registry(path)`` another file, ``Registry("postgresql://user@host/db")`` a PostgreSQL one."""

    def __init__(self, target: str | os.PathLike | None = None, *, timeout_s: float = 30.0):
        self.db = db.Database(target if target is not None else default_path(), what="registry",
                              timeout_s=timeout_s)
        self.path = self.db.path  # None on PostgreSQL
        self.timeout_s = timeout_s
        self._init_schema()

    def __repr__(self) -> str:
        return f"Registry({self.db.name!r})"

    def _init_schema(self) -> None:
        def migrate(con, stored: int) -> None:
            if stored < 2 and "manifest_id" not in con.columns("records"):  # v1 files: add the column
                con.execute("ALTER TABLE records ADD COLUMN manifest_id TEXT")
            con.executescript(_INDEXES)

        self.db.init_schema(_TABLES, meta="meta", version=SCHEMA_VERSION, kind="registry", migrate=migrate)

    # -- API --------------------------------------------------------------
    def new_id(self) -> int:
        """Reserve a fresh random 48-bit id (unique across concurrent writers)."""
        with self.db.connect() as con:
            for _ in range(64):
                wm_id = secrets.randbits(ID_BITS)
                try:
                    con.execute("INSERT INTO records(wm_id, reserved_at) VALUES(?, ?)", (wm_id, _now()))
                    return wm_id
                except db.UniqueViolation:
                    continue
        raise RegistryError("could not reserve a unique watermark id")  # pragma: no cover

    def put(
        self,
        wm_id: int,
        manifest: bytes | None,
        *,
        asset_sha256: str,
        media_type: str,
        signer: str | None,
        label: str | None = None,
        manifest_id: str | None = None,
    ) -> None:
        """Store (or replace) the record of ``wm_id``; ``manifest_id`` is the store's active
        manifest label (``urn:c2pa:...``), found again with :meth:`get_by_manifest_id`."""
        if not 0 <= int(wm_id) < 2**ID_BITS:
            raise ValueError(f"watermark id {wm_id} is outside the {ID_BITS}-bit range")
        now = _now()
        with self.db.connect() as con:
            con.execute(
                """INSERT INTO records(wm_id, reserved_at, registered_at, manifest, asset_sha256, media_type,
                                       signer, label, manifest_id)
                   VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(wm_id) DO UPDATE SET registered_at=excluded.registered_at,
                     manifest=excluded.manifest, asset_sha256=excluded.asset_sha256,
                     media_type=excluded.media_type, signer=excluded.signer, label=excluded.label,
                     manifest_id=excluded.manifest_id""",
                (int(wm_id), now, now, manifest, asset_sha256, media_type, signer, label, manifest_id),
            )

    def _one(self, where: str, value) -> Record | None:
        with self.db.connect() as con:
            row = con.execute(
                f"SELECT {_COLUMNS} FROM records WHERE {where}=? AND registered_at IS NOT NULL "
                "ORDER BY registered_at DESC LIMIT 1", (value,)).fetchone()
        if not row:
            return None
        rec = Record(*row)
        if rec.manifest is not None:
            rec.manifest = bytes(rec.manifest)
        return rec

    def get(self, wm_id: int) -> Record | None:
        """The registered record for ``wm_id``, or None (reserved-only ids count as absent)."""
        return self._one("wm_id", int(wm_id))

    def find_by_sha256(self, sha256: str) -> Record | None:
        """The latest record of the asset whose SHA-256 (hex) is ``sha256``, or None."""
        return self._one("asset_sha256", sha256)

    def get_by_manifest_id(self, manifest_id: str) -> Record | None:
        """The record whose active C2PA manifest is ``manifest_id`` (``urn:c2pa:...``), or None."""
        return self._one("manifest_id", manifest_id)

    def count(self) -> int:
        """How many assets are registered (reserved-only ids are not counted)."""
        with self.db.connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM records WHERE registered_at IS NOT NULL").fetchone()[0])
