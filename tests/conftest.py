"""Shared test fixtures.

- ``dhs_home``: a fresh dhstudio home (``$DHSTUDIO_HOME``) in a tmp folder.
- ``shared_data``: ``../shared/data`` next to the repository, or a skip with the reason.
- ``signing_identity``: a session-wide local CA + signer (keys made once), as
  ``(home, SigningIdentity, trust_anchor_pem)``.
- ``pg_server``: one throwaway PostgreSQL server for the session (tests/pgserver.py), or a skip
  with the reason; ``postgres_url``: a fresh empty database on it for each test.
- ``registry_target``: parametrized over both storage backends, a SQLite path and a
  ``postgresql://`` URL (what ``Registry()`` and ``open_store()`` accept).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def dhs_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dhs_home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("DHSTUDIO_HOME", str(home))
    monkeypatch.delenv("DHSTUDIO_KEY_PASSPHRASE", raising=False)
    return home


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (tests that use real data are skipped)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def signing_identity(tmp_path_factory):
    from provenance import keys

    home = tmp_path_factory.mktemp("dhs_signing_home")
    keys.init_keys(home, passphrase=None)
    ident = keys.load_identity(home, passphrase=None)
    return home, ident, keys.trust_anchor_pem(home)


@pytest.fixture(scope="session")
def pg_server():
    from tests.pgserver import PgServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb); "
                    "`make sysdeps` installs Debian's postgresql package")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[service]')")
    server = PgServer(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(pg_server) -> str:
    """A new empty database on the session's PostgreSQL server, so tests never see each other's rows."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_target(request, tmp_path) -> str | Path:
    """A storage target for each backend: a SQLite file path, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "store.sqlite3"
    return request.getfixturevalue("postgres_url")
