"""Registry: watermark id -> manifest store, so provenance survives stripping.

When a platform strips the C2PA manifest (re-encode, resize), the invisible
watermark still carries a 48-bit id. The registry maps that id back to the
manifest store we signed, which is what C2PA calls soft-binding resolution.

Storage is SQLite (one file in ``DHSTUDIO_HOME``) in WAL mode with a busy
timeout, so several signing processes can write at once. Ids are drawn at
random from the 48-bit space and inserted with a uniqueness constraint, so two
writers can never hand out the same id.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from provenance.errors import RegistryError
from provenance.media import wm_id_hex

ID_BITS = 48
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    wm_id INTEGER PRIMARY KEY,
    reserved_at TEXT NOT NULL,
    registered_at TEXT,
    manifest BLOB,
    asset_sha256 TEXT,
    media_type TEXT,
    signer TEXT,
    label TEXT
);
CREATE INDEX IF NOT EXISTS records_sha ON records(asset_sha256);
"""


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
    """SQLite-backed registry. ``Registry()`` opens the default one in DHSTUDIO_HOME."""

    def __init__(self, path: str | os.PathLike | None = None, *, timeout_s: float = 30.0):
        self.path = Path(path) if path is not None else default_path()
        self.timeout_s = timeout_s
        if self.path.is_dir():
            raise RegistryError(f"registry path {self.path} is a directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    # -- connection -------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            return con
        except sqlite3.Error as e:  # pragma: no cover - depends on OS errors
            raise RegistryError(f"cannot open registry {self.path}: {e}") from None

    def _init_schema(self) -> None:
        try:
            con = self._connect()
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
                con.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema', ?)",
                    (str(SCHEMA_VERSION),),
                )
                row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None or int(row[0]) > SCHEMA_VERSION:
                    raise RegistryError(
                        f"registry {self.path} has schema {row and row[0]}, newer than this dhstudio ({SCHEMA_VERSION})"
                    )
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            raise RegistryError(
                f"registry {self.path} is corrupt or not a dhstudio registry ({e}); move it aside to start a new one"
            ) from None

    # -- API --------------------------------------------------------------
    def new_id(self) -> int:
        """Reserve a fresh random 48-bit id (unique across concurrent writers)."""
        con = self._connect()
        try:
            for _ in range(64):
                wm_id = secrets.randbits(ID_BITS)
                try:
                    con.execute(
                        "INSERT INTO records(wm_id, reserved_at) VALUES(?, ?)", (wm_id, _now())
                    )
                    return wm_id
                except sqlite3.IntegrityError:
                    continue
            raise RegistryError("could not reserve a unique watermark id")  # pragma: no cover
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"registry {self.path}: {e}") from None
        finally:
            con.close()

    def put(
        self,
        wm_id: int,
        manifest: bytes | None,
        *,
        asset_sha256: str,
        media_type: str,
        signer: str | None,
        label: str | None = None,
    ) -> None:
        """Store (or replace) the record of ``wm_id``."""
        if not 0 <= int(wm_id) < 2**ID_BITS:
            raise ValueError(f"watermark id {wm_id} is outside the {ID_BITS}-bit range")
        con = self._connect()
        try:
            con.execute(
                """INSERT INTO records(wm_id, reserved_at, registered_at, manifest, asset_sha256, media_type, signer, label)
                   VALUES(?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(wm_id) DO UPDATE SET registered_at=excluded.registered_at,
                     manifest=excluded.manifest, asset_sha256=excluded.asset_sha256,
                     media_type=excluded.media_type, signer=excluded.signer, label=excluded.label""",
                (int(wm_id), _now(), _now(), manifest, asset_sha256, media_type, signer, label),
            )
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"registry {self.path}: {e}") from None
        finally:
            con.close()

    def get(self, wm_id: int) -> Record | None:
        """The registered record for ``wm_id``, or None (reserved-only ids count as absent)."""
        con = self._connect()
        try:
            row = con.execute(
                "SELECT wm_id, manifest, asset_sha256, media_type, signer, registered_at, label "
                "FROM records WHERE wm_id=? AND registered_at IS NOT NULL",
                (int(wm_id),),
            ).fetchone()
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"registry {self.path}: {e}") from None
        finally:
            con.close()
        return Record(*row) if row else None

    def find_by_sha256(self, sha256: str) -> Record | None:
        con = self._connect()
        try:
            row = con.execute(
                "SELECT wm_id, manifest, asset_sha256, media_type, signer, registered_at, label "
                "FROM records WHERE asset_sha256=? AND registered_at IS NOT NULL",
                (sha256,),
            ).fetchone()
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"registry {self.path}: {e}") from None
        finally:
            con.close()
        return Record(*row) if row else None

    def count(self) -> int:
        con = self._connect()
        try:
            return con.execute("SELECT COUNT(*) FROM records WHERE registered_at IS NOT NULL").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"registry {self.path}: {e}") from None
        finally:
            con.close()
