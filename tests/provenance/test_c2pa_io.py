"""Sign and read back our own manifests, every supported format, offline."""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from provenance import c2pa_io, keys
from provenance.c2pa_io import ProvenanceResult, media_type_of, read_file, read_manifest_store, sign_file
from provenance.media import sha256_file
from provenance.errors import InputError, OutputError, SigningError
from provenance.manifest import (
    DIGITAL_SOURCE_TYPES,
    GENERATION_LABEL,
    GenerationSpec,
    build_manifest_definition,
    decode_watermark_id,
    encode_watermark_id,
)

WM_ID = 0xA1B2C3D4E5F6


# --------------------------------------------------------------------------- media makers


def _rgb(w=96, h=64, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    img = np.concatenate([x.repeat(h, 0), y.repeat(w, 1), (x + y).repeat(1, 0)[:h, :w] / 2], axis=2)
    img = img + rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_jpeg(p: Path) -> Path:
    _rgb().save(p, "JPEG", quality=90)
    return p


def make_png(p: Path) -> Path:
    _rgb(seed=1).save(p, "PNG")
    return p


def make_webp(p: Path) -> Path:
    _rgb(seed=2).save(p, "WEBP", quality=80)
    return p


def make_wav(p: Path) -> Path:
    sr = 8000
    t = np.arange(sr // 4) / sr
    pcm = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2")
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return p


def make_mp4(p: Path) -> Path:
    import av

    with av.open(str(p), "w") as out:
        s = out.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(8):
            arr = np.full((48, 64, 3), i * 25, np.uint8)
            arr[:, : 8 * (i + 1), 0] = 255
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return p


def make_glb(p: Path) -> Path:
    js = b'{"asset":{"version":"2.0"},"buffers":[{"byteLength":64}]}'
    js += b" " * (-len(js) % 4)
    binc = bytes(range(64))
    total = 12 + 8 + len(js) + 8 + len(binc)
    data = b"glTF" + struct.pack("<II", 2, total)
    data += struct.pack("<I", len(js)) + b"JSON" + js
    data += struct.pack("<I", len(binc)) + b"BIN\x00" + binc
    p.write_bytes(data)
    return p


MAKERS = {
    "jpg": make_jpeg,
    "png": make_png,
    "webp": make_webp,
    "mp4": make_mp4,
    "wav": make_wav,
}


@pytest.fixture
def ident(signing_identity):
    return signing_identity


@pytest.fixture
def input_photo(tmp_path):
    return make_jpeg(tmp_path / "input_photo.jpg")


def _spec(input_photo: Path | None = None, **kw) -> GenerationSpec:
    base = dict(
        model_name="pifu-test",
        model_version="1.2",
        weights_sha256="ab" * 32,
        parameters={"resolution": 256, "steps": 4},
        seed=42,
        ingredients=[input_photo] if input_photo else [],
        watermark_alg="io.dhstudio.watermark.image.v1",
        watermark_id=WM_ID,
    )
    base.update(kw)
    return GenerationSpec(**base)


# --------------------------------------------------------------------------- manifest definition


def test_manifest_definition_contents(input_photo):
    d = build_manifest_definition(_spec(input_photo), media_type="image/png", title="x.png")
    assert d["claim_generator_info"][0]["name"] == "dhstudio"
    labels = [a["label"] for a in d["assertions"]]
    assert labels[0] == "c2pa.actions.v2"
    created = d["assertions"][0]["data"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]
    assert created["softwareAgent"]["name"] == "dhstudio"
    assert {GENERATION_LABEL, "c2pa.soft-binding", "cawg.training-mining"} <= set(labels)
    tm = next(a for a in d["assertions"] if a["label"] == "cawg.training-mining")["data"]["entries"]
    assert set(tm) == {"cawg.ai_generative_training", "cawg.ai_training", "cawg.ai_inference", "cawg.data_mining"}
    assert all(v["use"] == "notAllowed" for v in tm.values())
    with pytest.raises(ValueError):
        build_manifest_definition(_spec(digital_source_type="bogus"), media_type="image/png", title="x")
    with pytest.raises(ValueError):
        build_manifest_definition(_spec(training_mining="maybe"), media_type="image/png", title="x")


def test_watermark_id_roundtrip():
    for v in (0, 1, WM_ID, 2**48 - 1):
        assert decode_watermark_id(encode_watermark_id(v)) == v
    with pytest.raises(ValueError):
        encode_watermark_id(2**48)


# --------------------------------------------------------------------------- media types


def test_media_type_sniffing(tmp_path):
    p = make_png(tmp_path / "really_png.jpg")  # wrong extension: magic wins
    assert media_type_of(p) == "image/png"
    assert media_type_of(make_wav(tmp_path / "a.wav")) == "audio/wav"
    assert media_type_of(make_webp(tmp_path / "a.webp")) == "image/webp"
    assert media_type_of(make_glb(tmp_path / "a.glb")) == "model/gltf-binary"
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(InputError):
        media_type_of(txt)
    gif = tmp_path / "a.gif"
    _rgb().save(gif, "GIF")
    with pytest.raises(InputError, match="not supported"):
        media_type_of(gif)
    with pytest.raises(InputError):
        media_type_of(tmp_path / "missing.png")


# --------------------------------------------------------------------------- sign + read, all formats


@pytest.mark.parametrize("ext", sorted(MAKERS))
def test_sign_and_read_all_formats(ext, tmp_path, ident, input_photo):
    home, identity, anchor = ident
    src = MAKERS[ext](tmp_path / f"gen.{ext}")
    dst = tmp_path / "out" / f"signed.{ext}"
    store = sign_file(src, dst, _spec(input_photo), identity)
    assert isinstance(store, bytes) and len(store) > 500
    assert dst.is_file()
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]  # no temp left

    trusted = read_file(dst, trust_anchors=anchor)
    assert trusted.error is None, trusted.error
    assert trusted.manifest_found and trusted.state == "Trusted", (trusted.state, trusted.failures)
    assert trusted.failures == []

    untrusted = read_file(dst)
    assert untrusted.state == "Valid"
    assert untrusted.failures == ["signingCredential.untrusted"]

    r = trusted
    assert r.digital_source_type == DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]
    assert r.claim_generator.startswith("dhstudio/")
    created = r.actions[0]
    assert created["action"] == "c2pa.created"
    assert created["softwareAgent"]["name"] == "dhstudio"
    assert r.generator["model_name"] == "pifu-test"
    assert r.generator["model_version"] == "1.2"
    assert r.generator["weights_sha256"] == "ab" * 32
    assert r.generator["seed"] == 42
    assert r.generator["parameters"] == {"resolution": 256, "steps": 4}
    assert r.soft_binding == {"alg": "io.dhstudio.watermark.image.v1", "id": WM_ID,
                              "value": encode_watermark_id(WM_ID)}
    assert set(r.training_mining) == {"cawg.ai_generative_training", "cawg.ai_training",
                                      "cawg.ai_inference", "cawg.data_mining"}
    assert "cawg.training-mining" in r.assertions
    inputs = [i for i in r.ingredients if i["relationship"] == "inputTo"]
    assert len(inputs) == 1
    assert inputs[0]["title"] == "input_photo.jpg"
    assert inputs[0]["sha256"] == sha256_file(input_photo)
    assert r.signer["organization"] == "dhstudio local studio"
    assert "C2PA signer" in r.signer["common_name"]
    assert "Root CA" in (r.signer["issuer"] or "")
    d = r.to_dict()
    assert "manifest_bytes" not in d and d["state"] == "Trusted"

    # the returned store validates on its own (binding can't be checked without the asset)
    s = read_manifest_store(store, trust_anchors=anchor)
    assert s.state == "Trusted" and s.failures == [] and s.binding_checked is False
    assert s.soft_binding["id"] == WM_ID
    s2 = read_manifest_store(store)
    assert s2.state == "Valid" and s2.failures == ["signingCredential.untrusted"]


def test_other_source_type_and_full_iri(tmp_path, ident):
    _, identity, anchor = ident
    src = make_png(tmp_path / "a.png")
    iri = DIGITAL_SOURCE_TYPES["compositeWithTrainedAlgorithmicMedia"]
    sign_file(src, tmp_path / "b.png", _spec(digital_source_type=iri, watermark_id=None), identity)
    r = read_file(tmp_path / "b.png", trust_anchors=anchor)
    assert r.state == "Trusted" and r.digital_source_type == iri
    assert r.soft_binding is None


# --------------------------------------------------------------------------- edit chain


def test_resign_keeps_parent_chain(tmp_path, ident, input_photo):
    _, identity, anchor = ident
    v1 = tmp_path / "v1.jpg"
    sign_file(make_jpeg(tmp_path / "gen.jpg"), v1, _spec(input_photo), identity)
    first = read_file(v1, trust_anchors=anchor)

    # src already signed, no parent given: src is the parent
    v2 = tmp_path / "v2.jpg"
    sign_file(v1, v2, _spec(watermark_id=WM_ID + 1), identity)
    r = read_file(v2, trust_anchors=anchor)
    assert r.state == "Trusted", r.failures
    parents = [i for i in r.ingredients if i["relationship"] == "parentOf"]
    assert len(parents) == 1
    assert parents[0]["has_manifest"] and parents[0]["manifest_label"] == first.manifest_label
    assert parents[0]["sha256"] == sha256_file(v1)
    assert [a["action"] for a in r.actions][:2] == ["c2pa.opened", "c2pa.edited"]
    assert r.digital_source_type == DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]
    assert r.soft_binding["id"] == WM_ID + 1


def test_explicit_parent_after_reencode(tmp_path, ident):
    _, identity, anchor = ident
    v1 = tmp_path / "v1.png"
    sign_file(make_png(tmp_path / "gen.png"), v1, _spec(), identity)
    # "re-encode": decode the signed PNG and write a plain JPEG (manifest gone)
    reenc = tmp_path / "reenc.jpg"
    Image.open(v1).convert("RGB").save(reenc, "JPEG", quality=85)
    assert not read_file(reenc).manifest_found
    v2 = tmp_path / "v2.jpg"
    sign_file(reenc, v2, _spec(), identity, parent=v1)
    r = read_file(v2, trust_anchors=anchor)
    assert r.state == "Trusted"
    parents = [i for i in r.ingredients if i["relationship"] == "parentOf"]
    assert parents and parents[0]["title"] == "v1.png" and parents[0]["has_manifest"]


# --------------------------------------------------------------------------- tamper


def test_flipped_byte_is_invalid(tmp_path, ident):
    _, identity, anchor = ident
    dst = tmp_path / "signed.jpg"
    sign_file(make_jpeg(tmp_path / "gen.jpg"), dst, _spec(), identity)
    data = bytearray(dst.read_bytes())
    data[-200] ^= 0x01  # inside the entropy-coded scan, far from the manifest
    dst.write_bytes(bytes(data))
    for anchors in (anchor, None):
        r = read_file(dst, trust_anchors=anchors)
        assert r.manifest_found and r.state == "Invalid"
        assert "assertion.dataHash.mismatch" in r.failures


def test_flipped_byte_png_and_mp4(tmp_path, ident):
    _, identity, anchor = ident
    for ext, code in (("png", "assertion.dataHash.mismatch"), ("mp4", "assertion.bmffHash.mismatch")):
        dst = tmp_path / f"signed.{ext}"
        sign_file(MAKERS[ext](tmp_path / f"gen.{ext}"), dst, _spec(), identity)
        data = bytearray(dst.read_bytes())
        if ext == "mp4":
            i = data.find(b"mdat") + 40
        else:
            i = data.find(b"IDAT") + 20
        data[i] ^= 0x01
        dst.write_bytes(bytes(data))
        r = read_file(dst, trust_anchors=anchor)
        assert r.state == "Invalid", (ext, r.failures)
        assert code in r.failures, (ext, r.failures)


def test_tampered_store_signature(tmp_path, ident):
    _, identity, anchor = ident
    store = sign_file(make_png(tmp_path / "g.png"), tmp_path / "s.png", _spec(), identity)
    bad = bytearray(store)
    i = bad.find(b"pifu-test")
    bad[i] = ord("P")
    r = read_manifest_store(bytes(bad), trust_anchors=anchor)
    assert r.error is not None or r.state == "Invalid"


# --------------------------------------------------------------------------- GLB sidecar


def test_glb_sidecar(tmp_path, ident, input_photo):
    _, identity, anchor = ident
    src = make_glb(tmp_path / "body.glb")
    dst = tmp_path / "out" / "body_signed.glb"
    store = sign_file(src, dst, _spec(input_photo, watermark_alg="io.dhstudio.watermark.mesh.v1"), identity)
    sidecar = c2pa_io.sidecar_path(dst)
    assert sidecar.name == "body_signed.glb.c2pa"
    assert dst.read_bytes() == src.read_bytes()  # GLB unchanged
    assert sidecar.read_bytes() == store
    assert sorted(p.name for p in dst.parent.iterdir()) == ["body_signed.glb", "body_signed.glb.c2pa"]

    r = read_file(dst, trust_anchors=anchor)
    assert r.state == "Trusted", r.failures
    assert r.sidecar == str(sidecar)
    assert r.digital_source_type == DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]
    assert r.soft_binding["alg"] == "io.dhstudio.watermark.mesh.v1"
    assert "io.dhstudio.asset-hash" in r.assertions
    assert read_file(dst).state == "Valid"

    # every byte counts: header, JSON chunk, last byte of the binary chunk
    original = dst.read_bytes()
    for pos in (5, 30, len(original) - 1):
        data = bytearray(original)
        data[pos] ^= 0x20
        dst.write_bytes(bytes(data))
        t = read_file(dst, trust_anchors=anchor)
        assert t.state == "Invalid", pos
        assert "assertion.dataHash.mismatch" in t.failures
    # appended bytes too
    dst.write_bytes(original + b"\x00")
    assert read_file(dst, trust_anchors=anchor).state == "Invalid"
    dst.write_bytes(original)
    assert read_file(dst, trust_anchors=anchor).state == "Trusted"


def test_glb_without_sidecar_has_no_manifest(tmp_path):
    r = read_file(make_glb(tmp_path / "plain.glb"))
    assert not r.manifest_found and r.error is None and r.sidecar is None


# --------------------------------------------------------------------------- errors and atomicity


def test_dst_equals_src(tmp_path, ident):
    _, identity, _ = ident
    src = make_png(tmp_path / "a.png")
    before = src.read_bytes()
    with pytest.raises(OutputError):
        sign_file(src, src, _spec(), identity)
    with pytest.raises(OutputError):
        sign_file(src, tmp_path / "." / "a.png", _spec(), identity)
    assert src.read_bytes() == before


def test_unsupported_input(tmp_path, ident):
    _, identity, _ = ident
    txt = tmp_path / "a.txt"
    txt.write_text("not media")
    with pytest.raises(InputError):
        sign_file(txt, tmp_path / "b.txt", _spec(), identity)
    with pytest.raises(InputError):
        sign_file(tmp_path / "missing.png", tmp_path / "b.png", _spec(), identity)
    with pytest.raises(InputError):
        sign_file(make_png(tmp_path / "a.png"), tmp_path / "b.png", _spec(ingredients=[tmp_path / "nope.jpg"]),
                  identity)
    assert not (tmp_path / "b.txt").exists() and not (tmp_path / "b.png").exists()


def _only(dirpath: Path) -> list[str]:
    return sorted(p.name for p in dirpath.iterdir())


def test_failed_sign_leaves_nothing(tmp_path, ident):
    _, identity, _ = ident
    (tmp_path / "src").mkdir()
    src = make_png(tmp_path / "src" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    # a key that does not match the certificate: c2pa-rs's verify-after-sign rejects it
    other = keys.SigningIdentity(
        cert_chain_pem=identity.cert_chain_pem,
        private_key_pem=keys._key_pem(ec.generate_private_key(ec.SECP256R1()), None),
        alg="es256",
    )
    with pytest.raises(SigningError):
        sign_file(src, out / "b.png", _spec(), other)
    assert _only(out) == []
    # garbage key: the signer cannot even be created
    broken = keys.SigningIdentity(cert_chain_pem=identity.cert_chain_pem, private_key_pem=b"junk", alg="es256")
    with pytest.raises(SigningError):
        sign_file(src, out / "b.png", _spec(), broken)
    # GLB: neither the copy nor the sidecar
    glb = make_glb(tmp_path / "src" / "m.glb")
    with pytest.raises(SigningError):
        sign_file(glb, out / "m.glb", _spec(), other)
    assert _only(out) == []
    # an existing dst is left untouched by a failed sign
    (out / "b.png").write_bytes(b"old")
    with pytest.raises(SigningError):
        sign_file(src, out / "b.png", _spec(), other)
    assert (out / "b.png").read_bytes() == b"old" and _only(out) == ["b.png"]


def test_bad_spec_is_signing_error(tmp_path, ident):
    _, identity, _ = ident
    with pytest.raises(SigningError):
        sign_file(make_png(tmp_path / "a.png"), tmp_path / "b.png", _spec(digital_source_type="nope"), identity)
    assert not (tmp_path / "b.png").exists()


def test_read_missing_and_garbage(tmp_path):
    r = read_file(tmp_path / "missing.jpg")
    assert r.error and r.error["code"] == "input.not_found"
    g = tmp_path / "garbage.jpg"
    g.write_bytes(b"\xff\xd8\xff" + os.urandom(2000))
    r = read_file(g)
    assert not r.manifest_found
    assert isinstance(r, ProvenanceResult)
    r = read_manifest_store(b"not a manifest store")
    assert not r.manifest_found and r.error is not None
    r = read_manifest_store(b"")
    assert r.error["code"] == "input.empty"


def test_glb_resign_keeps_parent_chain(tmp_path, ident):
    _, identity, anchor = ident
    v1 = tmp_path / "v1.glb"
    sign_file(make_glb(tmp_path / "m.glb"), v1, _spec(), identity)
    first = read_file(v1, trust_anchors=anchor)
    # a signed GLB as src: its external store becomes the parent's manifest
    v2 = tmp_path / "v2.glb"
    sign_file(v1, v2, _spec(model_name="mesh-wm"), identity)
    r = read_file(v2, trust_anchors=anchor)
    assert r.state == "Trusted", r.failures
    parents = [i for i in r.ingredients if i["relationship"] == "parentOf"]
    assert len(parents) == 1 and parents[0]["manifest_label"] == first.manifest_label
    assert parents[0]["digital_source_type"] == DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]
    # a changed mesh with the earlier signed version as explicit parent
    changed = tmp_path / "changed.glb"
    data = bytearray(v1.read_bytes())
    data[-1] ^= 0xFF
    changed.write_bytes(bytes(data))
    v3 = tmp_path / "v3.glb"
    sign_file(changed, v3, _spec(), identity, parent=v1)
    r3 = read_file(v3, trust_anchors=anchor)
    assert r3.state == "Trusted"
    assert [i["relationship"] for i in r3.ingredients] == ["parentOf"]
    # a GLB parent without its external store is an input error
    with pytest.raises(InputError):
        sign_file(changed, tmp_path / "v4.glb", _spec(), identity, parent=make_glb(tmp_path / "bare.glb"))
    assert not (tmp_path / "v4.glb").exists()
