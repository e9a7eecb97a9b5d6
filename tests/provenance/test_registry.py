"""The registry on both storage backends (SQLite file, PostgreSQL server: ``registry_target``),
its schema-1 -> 2 migration, and the clear one-line errors for a bad database or URL."""

import multiprocessing as mp
import sqlite3
import threading

import pytest

from provenance import db
from provenance.errors import RegistryError
from provenance.media import wm_id_hex
from provenance.registry import ID_BITS, SCHEMA_VERSION, Registry


def test_put_get_roundtrip(registry_target):
    reg = Registry(registry_target)
    wm_id = reg.new_id()
    assert 0 <= wm_id < 2**ID_BITS
    assert reg.get(wm_id) is None  # reserved only
    assert reg.count() == 0
    reg.put(wm_id, b"manifest-bytes\x00\xff", asset_sha256="ab" * 32, media_type="image/jpeg", signer="CN=x")
    rec = reg.get(wm_id)
    assert rec.manifest == b"manifest-bytes\x00\xff" and isinstance(rec.manifest, bytes)
    assert rec.media_type == "image/jpeg"
    assert rec.manifest_id is None
    assert reg.find_by_sha256("ab" * 32).wm_id == wm_id
    assert reg.find_by_sha256("cd" * 32) is None
    assert reg.count() == 1
    assert rec.summary()["wm_id_hex"] == wm_id_hex(wm_id)
    # put replaces the record of an id
    reg.put(wm_id, b"v2", asset_sha256="ab" * 32, media_type="image/png", signer="CN=y", label="again")
    assert (reg.get(wm_id).manifest, reg.get(wm_id).label) == (b"v2", "again")
    assert reg.count() == 1


def test_largest_48_bit_id(registry_target):
    reg = Registry(registry_target)
    top = 2**ID_BITS - 1  # needs 64-bit columns (BIGINT on PostgreSQL)
    reg.put(top, None, asset_sha256="ee" * 32, media_type="image/png", signer=None)
    assert reg.get(top).wm_id == top and reg.get(top).manifest is None


def test_manifest_id_lookup(registry_target):
    reg = Registry(registry_target)
    a, b = reg.new_id(), reg.new_id()
    reg.put(a, b"A", asset_sha256="aa" * 32, media_type="image/png", signer="s", manifest_id="urn:c2pa:aaaa")
    reg.put(b, b"B", asset_sha256="bb" * 32, media_type="image/png", signer="s", manifest_id="urn:uuid:bbbb")
    assert reg.get_by_manifest_id("urn:c2pa:aaaa").wm_id == a
    assert reg.get_by_manifest_id("urn:uuid:bbbb").manifest == b"B"
    assert reg.get(a).manifest_id == "urn:c2pa:aaaa"
    assert reg.get(a).summary()["manifest_id"] == "urn:c2pa:aaaa"
    assert reg.get_by_manifest_id("urn:c2pa:nope") is None
    # reopening sees the same rows and keeps the schema
    assert Registry(registry_target).get_by_manifest_id("urn:c2pa:aaaa").wm_id == a


def test_put_rejects_out_of_range(registry_target):
    reg = Registry(registry_target)
    with pytest.raises(ValueError):
        reg.put(2**48, b"", asset_sha256="", media_type="x", signer=None)


def test_newer_schema_is_clear_error(registry_target):
    reg = Registry(registry_target)
    with reg.db.connect() as con:
        con.execute("UPDATE meta SET value='99' WHERE key='schema'")
    with pytest.raises(RegistryError, match="newer than this dhstudio") as e:
        Registry(registry_target)
    assert "\n" not in str(e.value)


def test_corrupt_registry_is_clear_error(tmp_path):
    p = tmp_path / "r.sqlite3"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RegistryError, match="corrupt") as e:
        Registry(p)
    assert "\n" not in str(e.value)
    assert p.read_bytes().startswith(b"this is not a database")  # not overwritten


def test_directory_path_is_error(tmp_path):
    with pytest.raises(RegistryError):
        Registry(tmp_path)


_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    wm_id INTEGER PRIMARY KEY, reserved_at TEXT NOT NULL, registered_at TEXT, manifest BLOB,
    asset_sha256 TEXT, media_type TEXT, signer TEXT, label TEXT
);
CREATE INDEX records_sha ON records(asset_sha256);
INSERT INTO meta(key, value) VALUES('schema', '1');
INSERT INTO records VALUES(12345, '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00', x'0102',
                           'ff', 'image/png', 'CN=old', NULL);
"""


def test_schema_1_file_is_migrated_in_place(tmp_path):
    p = tmp_path / "old.sqlite3"
    con = sqlite3.connect(p)
    con.executescript(_V1_SCHEMA)
    con.close()
    reg = Registry(p)
    old = reg.get(12345)
    assert (old.manifest, old.signer, old.manifest_id) == (b"\x01\x02", "CN=old", None)
    assert reg.find_by_sha256("ff").wm_id == 12345
    reg.put(7, b"new", asset_sha256="aa", media_type="image/png", signer=None, manifest_id="urn:c2pa:x")
    assert Registry(p).get_by_manifest_id("urn:c2pa:x").wm_id == 7  # reopening a migrated file is a no-op
    con = sqlite3.connect(p)
    assert con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == str(SCHEMA_VERSION)
    assert "records_manifest_id" in {r[1] for r in con.execute("PRAGMA index_list(records)")}
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _writer(target, n, q):
    reg = Registry(target)
    ids = []
    for i in range(n):
        wm_id = reg.new_id()
        reg.put(wm_id, bytes([i % 256]) * 100, asset_sha256=f"{wm_id:064x}", media_type="image/png", signer="w")
        ids.append(wm_id)
    q.put(ids)


def test_concurrent_writers(registry_target):
    """Four processes reserve and register at once: no id twice, no row lost."""
    Registry(registry_target)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(registry_target, 40, q)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in q.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(ids)) == 160
    reg = Registry(registry_target)
    assert reg.count() == 160
    if not db.is_url(registry_target):
        con = sqlite3.connect(registry_target)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_concurrent_new_id_threads(registry_target, monkeypatch):
    """Threads reserving ids at once never get the same one, even when the random draws collide."""
    import provenance.registry as registry_mod

    reg = Registry(registry_target)
    # a tiny id space forces collisions: the uniqueness constraint, not luck, must keep ids apart
    draws = iter(list(range(200)) * 8)
    lock = threading.Lock()

    def randbits(_bits):
        with lock:
            return next(draws)

    monkeypatch.setattr(registry_mod.secrets, "randbits", randbits)
    got, errors = [], []

    def worker():
        try:
            for _ in range(20):
                got.append(reg.new_id())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(got) == 160 and len(set(got)) == 160


def test_concurrent_first_open(registry_target):
    """Several threads opening a new database at once all set up the same schema, none fails."""
    errors = []

    def open_it():
        try:
            Registry(registry_target).count()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_url_squashed_into_a_path_is_clear_error():
    from pathlib import Path

    with pytest.raises(RegistryError, match="as a string"):
        Registry(Path("postgresql://postgres@127.0.0.1:5432/registry"))


# -- PostgreSQL only -----------------------------------------------------------------------------

def test_postgres_unreachable_server_is_one_line(pg_server):
    url = f"postgresql://dhs:secret-pw@127.0.0.1:{_closed_port()}/registry"
    with pytest.raises(RegistryError, match="cannot connect to the registry") as e:
        Registry(url)
    msg = str(e.value)
    assert "\n" not in msg and "secret-pw" not in msg and "127.0.0.1" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__


@pytest.mark.parametrize("url", [
    "postgresql://127.0.0.1:notaport/registry",
    "postgres://postgres@127.0.0.1:{port}/no_such_database",
    "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=bogus",
])
def test_postgres_bad_url_is_one_line(pg_server, url):
    with pytest.raises(RegistryError) as e:
        Registry(url.format(port=pg_server.port))
    assert "\n" not in str(e.value) and str(e.value).startswith("cannot connect to the registry")


def test_missing_driver_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(RegistryError, match=r"dhstudio\[service\]"):
        Registry("postgresql://postgres@127.0.0.1:1/x")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


# -- the SQL bridge ------------------------------------------------------------------------------

def test_to_postgres_translation():
    sql = "INSERT INTO t(a, b, c) VALUES(?, '?%', ?) -- 100%"
    assert db.to_postgres(sql, has_params=True) == "INSERT INTO t(a, b, c) VALUES(%s, '?%%', %s) -- 100%%"
    ddl = "CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB, note TEXT DEFAULT 'INTEGER BLOB')"
    assert db.to_postgres(ddl, has_params=False) == (
        "CREATE TABLE t (id BIGINT PRIMARY KEY, data BYTEA, note TEXT DEFAULT 'INTEGER BLOB')")
    assert db.redact("postgresql://u:pw@h:5/d") == "postgresql://u:***@h:5/d"
    assert db.is_url("postgres://h/d") and db.is_url("PostgreSQL://h/d") and not db.is_url("reg.sqlite3")
