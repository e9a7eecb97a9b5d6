"""A published file's registry record carries its active C2PA manifest label, on both storage
backends, and a stripped copy is still resolved through a registry given as a path or a URL."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from provenance import c2pa_io
from provenance.registry import Registry
from studio.pipelines.publish import publish


def _photo(path, h=320, w=480):
    """Smooth shading plus grain: a picture the image watermark can hide in (pure noise is not)."""
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 19.0) * np.cos(y / 27.0)
    grain = np.random.default_rng(7).normal(0, 10, (h, w, 3))
    Image.fromarray(np.clip(base[..., None] + grain, 0, 255).astype(np.uint8)).save(path)
    return path


def test_published_record_is_found_by_manifest_id(tmp_path, signing_identity, registry_target):
    _, ident, anchor = signing_identity
    reg = Registry(registry_target)
    res = publish(_photo(tmp_path / "in.png"), tmp_path / "out.png", identity=ident, registry=reg)

    read = c2pa_io.read_file(res.path, trust_anchors=anchor)
    assert read.state == "Trusted" and read.manifest_label.startswith("urn:")
    rec = reg.get_by_manifest_id(read.manifest_label)
    assert rec is not None and rec.wm_id == res.watermark_id and rec.asset_sha256 == res.asset_sha256
    assert c2pa_io.active_manifest_label(rec.manifest) == read.manifest_label

    # the manifest stripped (pixels re-saved): the watermark finds the record in the same registry,
    # handed to the verifier as it is given on the command line (a path or a postgresql:// URL)
    import detect

    stripped = tmp_path / "stripped.png"
    Image.open(res.path).convert("RGB").save(stripped)
    assert not c2pa_io.read_file(stripped).manifest_found
    v = detect.verify(stripped, detect.VerifyOptions(registry=str(registry_target), content=False,
                                                     trust_anchors=anchor, use_default_anchors=False))
    assert v.registry.hit and v.registry.lookup == "watermark-id", v.registry
    assert v.registry.record["manifest_id"] == read.manifest_label


@pytest.mark.parametrize("data", [b"", b"not a manifest store", b"\x00" * 64], ids=["empty", "text", "zeros"])
def test_active_manifest_label_of_junk_is_none(data):
    assert c2pa_io.active_manifest_label(data) is None
