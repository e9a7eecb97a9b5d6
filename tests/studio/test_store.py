"""The web service's store: jobs across restarts, hashed scoped revocable tokens, a corrupt file;
on both storage backends (a SQLite file, a PostgreSQL database: ``registry_target`` in conftest)."""

from __future__ import annotations

import threading
import time

import pytest

from provenance.errors import RegistryError
from studio.api.store import open_store, parse_token


@pytest.fixture
def store_target(registry_target):
    return registry_target


def _stored_text(st) -> str:
    """Everything the store keeps about tokens, as text (to look for a secret in it)."""
    if st.path is not None:
        return st.path.read_bytes().decode("latin-1")
    with st.db.connect() as con:
        return repr(con.execute("SELECT * FROM tokens").fetchall())


def test_jobs_round_trip_expire_and_restart(store_target):
    st = open_store(store_target)
    st.add_job("a" * 32, kind="verify", media_type="video/mp4", size=10)
    st.add_job("b" * 32, kind="verify", media_type="image/png", size=5, state="running")
    st.add_job("c" * 32, kind="verify", media_type="image/png", size=5)
    st.update_job("c" * 32, state="finished", progress=1.0, finished=time.time() - 100,
                  result={"label": "signed-intact", "reasons": ["x"]})
    got = st.get_job("c" * 32)
    assert got["state"] == "finished" and got["result"]["label"] == "signed-intact" and got["progress"] == 1.0
    assert st.count_jobs() == {"queued": 1, "running": 1, "finished": 1, "failed": 0}
    with pytest.raises(ValueError, match="not job fields"):
        st.update_job("a" * 32, owner="x")

    # a new server on the same file: what was left queued or running ends failed, with the reason
    st2 = open_store(store_target)
    assert st2.fail_unfinished("the server restarted") == 2
    a = st2.get_job("a" * 32)
    assert a["state"] == "failed" and a["error"] == "the server restarted" and a["finished"] is not None
    # expiry removes ended jobs older than the cut and says which
    gone = st2.expire_jobs(time.time() - 50)
    assert [g["id"] for g in gone] == ["c" * 32] and st2.get_job("c" * 32) is None
    assert st2.get_job("a" * 32) is not None


def test_tokens_hashed_scoped_revocable(store_target):
    st = open_store(store_target)
    token, row = st.create_token("pipeline-a")
    assert parse_token(token) is not None and row["scopes"] == ["sign"] and row["revoked"] is None
    assert row["id"] in _stored_text(st)
    assert token.split("_")[-1] not in _stored_text(st)  # the secret is not stored
    assert st.check_token(token, "sign")[1] == "ok"
    assert st.get_token(row["id"])["last_used"] is not None
    assert st.check_token(token[:-1] + ("A" if token[-1] != "A" else "B"), "sign")[1] == "unknown"
    assert st.check_token("dhs_000000000000_" + "x" * 43, "sign")[1] == "unknown"
    assert st.check_token("Bearer nonsense", "sign")[1] == "malformed"
    assert st.check_token(token, "admin")[1] == "scope"
    other, _ = st.create_token("pipeline-b")
    assert st.revoke_token("pipeline-a") == 1
    assert st.check_token(token, "sign")[1] == "revoked" and st.check_token(other, "sign")[1] == "ok"
    assert sorted(t["name"] for t in st.list_tokens()) == ["pipeline-a", "pipeline-b"]
    with pytest.raises(ValueError, match="scope"):
        st.create_token("x", ("root",))
    with pytest.raises(ValueError, match="name"):
        st.create_token("  ")


def test_concurrent_job_writers(store_target):
    st = open_store(store_target)

    def add(i):
        for k in range(20):
            st.add_job(f"{i:02d}{k:030d}", kind="verify", media_type="image/png", size=1)

    ts = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert st.count_jobs()["queued"] == 80


def test_corrupt_or_wrong_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "service.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RegistryError, match="corrupt or not a dhstudio database"):
        open_store(bad)
    with pytest.raises(RegistryError, match="is a directory"):
        open_store(tmp_path)


def test_unreachable_postgres_is_one_clear_error(pg_server):
    from tests.provenance.test_registry import _closed_port

    with pytest.raises(RegistryError, match="cannot connect to the service database") as e:
        open_store(f"postgresql://postgres:pw@127.0.0.1:{_closed_port()}/service")
    assert "\n" not in str(e.value) and ":pw@" not in str(e.value)
