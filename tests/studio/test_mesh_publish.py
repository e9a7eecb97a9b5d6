"""Publishing a GLB: geometry watermark + C2PA sidecar; verify with and without the sidecar,
and after re-export to PLY / OBJ."""

from __future__ import annotations

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")

import detect  # noqa: E402
from provenance.manifest import GenerationSpec  # noqa: E402
from provenance.registry import Registry  # noqa: E402
from studio.pipelines.publish import publish  # noqa: E402


def verify(path, registry):
    """The Verdict as its JSON dict (what the CLI prints with --json)."""
    return detect.verify(path, detect.VerifyOptions(registry=registry)).to_dict()


def bumpy_sphere() -> "trimesh.Trimesh":
    m = trimesh.creation.icosphere(subdivisions=5, radius=0.3)
    v = np.asarray(m.vertices)
    r = 1 + 0.05 * np.sin(7 * v[:, 0] / 0.3) * np.cos(5 * v[:, 1] / 0.3) + 0.2 * (v[:, 1] / 0.3)
    return trimesh.Trimesh(v * r[:, None] * [1.0, 2.5, 0.8], m.faces, process=False)


def test_glb_publish_and_verify(tmp_path, dhs_home):
    src = tmp_path / "body.glb"
    bumpy_sphere().export(src)
    reg = Registry()
    res = publish(src, tmp_path / "out.glb", GenerationSpec(model_name="test-mesh"), registry=reg)
    assert res.watermark_id is not None and res.sidecar.is_file()

    v = verify(tmp_path / "out.glb", registry=reg)
    assert v["label"] == "signed-generated-intact", v["reasons"]
    assert v["watermark"]["found"] and v["watermark"]["id"] == res.watermark_id
    assert v["watermark"]["algorithm"] == "io.dhstudio.watermark.mesh.v2"

    res.sidecar.rename(tmp_path / "elsewhere.c2pa")  # the sidecar is lost
    v = verify(tmp_path / "out.glb", registry=reg)
    assert v["label"] == "watermarked-manifest-stripped", v["reasons"]
    assert v["registry"]["hit"]

    mesh = trimesh.load(tmp_path / "out.glb", force="mesh")
    for ext, mt in ((".ply", "model/ply"), (".obj", "model/obj")):
        mesh.export(tmp_path / f"re{ext}")
        v = verify(tmp_path / f"re{ext}", registry=reg)
        assert v["file"]["media_type"] == mt
        assert v["label"] == "watermarked-manifest-stripped", v["reasons"]
        assert v["provenance"]["error"]["code"] == "provenance.format_without_c2pa"

    v = verify(src, registry=reg)
    assert v["label"] == "unsigned-unmarked"
    assert not v["watermark"]["found"]


def test_glb_tampered_geometry(tmp_path, dhs_home):
    src = tmp_path / "body.glb"
    bumpy_sphere().export(src)
    reg = Registry()
    res = publish(src, tmp_path / "out.glb", GenerationSpec(model_name="test-mesh"), registry=reg)
    data = bytearray(res.path.read_bytes())
    data[-10] ^= 0x01  # one bit in the binary buffer
    res.path.write_bytes(bytes(data))
    v = verify(res.path, registry=reg)
    assert v["label"] == "signed-tampered", v["reasons"]
