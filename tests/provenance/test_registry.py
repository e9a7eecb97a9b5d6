import multiprocessing as mp
import sqlite3

import pytest

from provenance.errors import RegistryError
from provenance.media import wm_id_hex
from provenance.registry import ID_BITS, Registry


def test_put_get_roundtrip(tmp_path):
    reg = Registry(tmp_path / "r.sqlite3")
    wm_id = reg.new_id()
    assert 0 <= wm_id < 2**ID_BITS
    assert reg.get(wm_id) is None  # reserved only
    reg.put(wm_id, b"manifest-bytes", asset_sha256="ab" * 32, media_type="image/jpeg", signer="CN=x")
    rec = reg.get(wm_id)
    assert rec.manifest == b"manifest-bytes"
    assert rec.media_type == "image/jpeg"
    assert reg.find_by_sha256("ab" * 32).wm_id == wm_id
    assert reg.count() == 1
    assert rec.summary()["wm_id_hex"] == wm_id_hex(wm_id)


def test_put_rejects_out_of_range(tmp_path):
    reg = Registry(tmp_path / "r.sqlite3")
    with pytest.raises(ValueError):
        reg.put(2**48, b"", asset_sha256="", media_type="x", signer=None)


def test_corrupt_registry_is_clear_error(tmp_path):
    p = tmp_path / "r.sqlite3"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RegistryError, match="corrupt"):
        Registry(p)
    assert p.read_bytes().startswith(b"this is not a database")  # not overwritten


def test_directory_path_is_error(tmp_path):
    with pytest.raises(RegistryError):
        Registry(tmp_path)


def _writer(path, n, q):
    reg = Registry(path)
    ids = []
    for i in range(n):
        wm_id = reg.new_id()
        reg.put(wm_id, bytes([i % 256]) * 100, asset_sha256=f"{wm_id:064x}", media_type="image/png", signer="w")
        ids.append(wm_id)
    q.put(ids)


def test_concurrent_writers(tmp_path):
    path = tmp_path / "r.sqlite3"
    Registry(path)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, 40, q)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in q.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(ids)) == 160
    reg = Registry(path)
    assert reg.count() == 160
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
