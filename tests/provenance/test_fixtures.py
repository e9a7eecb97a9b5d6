"""c2pa-rs's own conformance fixtures: our reader must report what c2pa-rs reports.

The fixtures live in ../shared/data/c2pa_fixtures (not in this repository);
every test here skips with the reason when the folder is absent. The expected
results are the table in that folder's README.md; ``test_table_matches_readme``
checks that the table below has not drifted from it.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from provenance.c2pa_io import read_file, read_manifest_store

pytestmark = pytest.mark.shared

FIXTURES = "c2pa_fixtures"

# file -> (kind, detail)
EXPECTED: dict[str, tuple[str, object]] = {
    **{n: ("valid", "signingCredential.untrusted")
       for n in ("C.jpg", "CA.jpg", "CACA.jpg", "CA_ct.jpg", "boxhash.jpg", "ocsp.jpg",
                 "CIE-sig-CA.jpg", "video1.mp4", "legacy.mp4")},
    "E-sig-CA.jpg": ("invalid", "claimSignature.mismatch"),
    "XCA.jpg": ("invalid", "assertion.dataHash.mismatch"),
    **{n: ("none", None)
       for n in ("no_manifest.jpg", "earth_apollo17.jpg", "sample1.png", "sample1.wav", "sample1.webp",
                 "video1_no_manifest.mp4")},
    "cloudx.jpg": ("remote", None),
    "no_alg.jpg": ("error", "unknown algorithm"),
    "prerelease.jpg": ("error", "prerelease content detected"),
    **{n: ("hostile", None)
       for n in ("nested_moov_1000.mp4", "tiff_poc.tiff", "sample3.invalid.wav", "riff_bomb_1000.wav")},
}

HOSTILE_SECONDS = 5.0


@pytest.fixture
def fixtures(shared_data):
    d = shared_data / FIXTURES
    if not d.is_dir():
        pytest.skip(f"{d} is absent: C2PA conformance fixtures not available")
    return d


def _expand_cell(cell: str) -> list[str]:
    names = []
    for item in re.split(r",\s*", cell.strip()):
        item = item.strip()
        if not item:
            continue
        if "/." in item:  # "sample1.png/.wav/.webp"
            first, *rest = item.split("/")
            stem = first.rsplit(".", 1)[0]
            names.append(first)
            names.extend(stem + ext for ext in rest)
        else:
            names.append(item)
    return names


def _kind(state_cell: str) -> str:
    s = state_cell.lower()
    if s.startswith("valid"):
        return "valid"
    if s.startswith("invalid"):
        return "invalid"
    if "no manifest" in s:
        return "none"
    if "remote" in s:
        return "remote"
    if "hostile" in s or "malformed" in s:
        return "hostile"
    if "error" in s:
        return "error"
    return s


def test_table_matches_readme(fixtures):
    text = (fixtures / "README.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("|") and not ln.startswith("|---")]
    parsed: dict[str, str] = {}
    for ln in rows[1:]:  # skip the header row
        cells = [c.strip() for c in ln.strip("|").split("|")]
        for name in _expand_cell(cells[0]):
            parsed[name] = _kind(cells[1])
    assert parsed == {k: v[0] for k, v in EXPECTED.items()}
    # every file named there exists
    for name in parsed:
        assert (fixtures / name).is_file(), name


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(fixtures, name):
    kind, detail = EXPECTED[name]
    path = fixtures / name
    t0 = time.monotonic()
    r = read_file(path)
    elapsed = time.monotonic() - t0
    assert elapsed < HOSTILE_SECONDS, f"{name} took {elapsed:.1f}s"
    json.dumps(r.to_dict())  # always serialisable

    if kind == "valid":
        assert r.error is None, r.error
        assert r.manifest_found and r.state == "Valid"
        assert r.failures == [detail]
        assert r.signer and (r.signer.get("common_name") or r.signer.get("organization"))
        assert r.claim_generator
    elif kind == "invalid":
        assert r.manifest_found and r.state == "Invalid"
        assert detail in r.failures
    elif kind == "none":
        assert not r.manifest_found and r.state is None and r.error is None
        assert r.remote_url is None
    elif kind == "remote":
        assert not r.manifest_found and r.state is None
        assert r.remote_url and r.remote_url.startswith("https://")
        assert r.error["code"] == "manifest.remote_not_fetched"
        assert r.remote_url in r.error["message"]
    elif kind == "error":
        assert not r.manifest_found and r.state is None
        assert r.error and r.error["code"] and detail in r.error["message"]
        assert "\n" not in r.error["message"]
    elif kind == "hostile":
        assert not r.manifest_found
        assert r.error is None or (r.error["code"] and r.error["message"])
    else:  # pragma: no cover
        pytest.fail(f"unknown kind {kind}")


def test_ingredient_with_bad_signature_is_reported(fixtures):
    r = read_file(fixtures / "CIE-sig-CA.jpg")
    assert r.state == "Valid"
    bad = [i for i in r.ingredients if "claimSignature.mismatch" in i["validation_failures"]]
    assert bad and bad[0]["title"] == "E-sig-CA.jpg"


def test_parent_chain_is_listed(fixtures):
    r = read_file(fixtures / "CACA.jpg")
    parents = [i for i in r.ingredients if i["relationship"] == "parentOf"]
    assert parents and parents[0]["title"] == "CA.jpg" and parents[0]["has_manifest"]


def test_c2pa_test_roots_make_fixtures_trusted(fixtures):
    settings = json.loads((fixtures / "test_settings.json").read_text())
    anchors = settings["trust"]["trust_anchors"].encode()
    for name in ("C.jpg", "CA.jpg"):
        r = read_file(fixtures / name, trust_anchors=anchors)
        assert r.state == "Trusted" and r.failures == [], (name, r.failures)
    # tampered stays Invalid whatever the anchors
    r = read_file(fixtures / "XCA.jpg", trust_anchors=anchors)
    assert r.state == "Invalid" and r.failures == ["assertion.dataHash.mismatch"]


def test_remote_manifest_is_never_fetched(fixtures):
    # c2pa-rs is configured with remote_manifest_fetch=false and an empty
    # allowed_network_hosts list: the answer comes back at once, offline.
    t0 = time.monotonic()
    r = read_file(fixtures / "cloudx.jpg")
    assert time.monotonic() - t0 < 2.0
    assert r.remote_url == (
        "https://cai-manifestx.adobe.com/manifests/adobe-urn-uuid-5f37e182-3687-462e-a7fb-573462780391"
    )


def test_garbage_store_bytes(fixtures):
    # a non-C2PA file handed to the stand-alone store reader is a clean error
    r = read_manifest_store((fixtures / "tiff_poc.tiff").read_bytes())
    assert not r.manifest_found and r.error


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["nested_moov_1000.mp4", "riff_bomb_1000.wav", "sample3.invalid.wav"])
def test_signing_hostile_file_is_input_error(fixtures, name, signing_identity, tmp_path):
    from provenance.c2pa_io import sign_file
    from provenance.errors import InputError
    from provenance.manifest import GenerationSpec

    _, identity, _ = signing_identity
    t0 = time.monotonic()
    with pytest.raises(InputError):
        sign_file(fixtures / name, tmp_path / name, GenerationSpec(), identity)
    assert time.monotonic() - t0 < HOSTILE_SECONDS
    assert list(tmp_path.iterdir()) == []
