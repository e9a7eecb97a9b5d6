"""Shared test fixtures.

- ``dhs_home``: a fresh dhstudio home (``$DHSTUDIO_HOME``) in a tmp folder.
- ``shared_data``: ``../shared/data`` next to the repository, or a skip with the reason.
- ``signing_identity``: a session-wide local CA + signer (keys made once), as
  ``(home, SigningIdentity, trust_anchor_pem)``.
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
