"""`dhstudio detect FILE... --json`: one JSON object per file, with the fields the issue names;
bad input (no face, greyscale, CMYK, huge, not an image) answered per file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")
pytest.importorskip("mediapipe", reason="the faces extra is not installed (make install adds it)")

from detect.registry import create_detector  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    m = create_detector("meso4", input_size=64)
    return m.save(tmp_path_factory.mktemp("w") / "meso.safetensors")


def run(args, tmp_path):
    env = dict(os.environ, DHSTUDIO_HOME=str(tmp_path / "home"))
    return subprocess.run([sys.executable, "-m", "studio.cli", "detect", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env=env)


def test_detect_json_lines(weights, tmp_path, shared_data):
    face = shared_data / "faces_fake_public" / "real" / sorted(os.listdir(shared_data / "faces_fake_public" / "real"))[0]
    rgb = np.asarray(Image.open(face).convert("RGB"))
    grey = tmp_path / "grey.jpg"
    Image.fromarray(rgb).convert("L").save(grey)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(cmyk)
    huge = tmp_path / "huge.png"  # 9000 x 6000 with the face in a corner: decoded bounded
    canvas = np.full((6000, 9000, 3), 90, np.uint8)
    big_face = np.asarray(Image.fromarray(rgb).resize((1800, 1800)))
    canvas[300:2100, 400:2200] = big_face
    Image.fromarray(canvas).save(huge, compress_level=1)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(blank)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    p = run([face, grey, cmyk, huge, blank, text, "--weights", weights, "--json", "--threads", "1"], tmp_path)
    lines = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert len(lines) == 6, p.stdout + p.stderr
    by = {Path(r["path"]).name: r for r in lines}
    for name in (face.name, "grey.jpg", "cmyk.jpg", "huge.png"):
        r = by[name]
        assert set(r) >= {"path", "score", "faces", "detector", "error"}
        assert r["error"] is None and 0.0 <= r["score"] <= 1.0 and len(r["faces"]) >= 1, r
        assert r["detector"]["name"] == "meso4" and len(r["detector"]["weights_sha256"]) == 64
        assert r["score"] == max(f["score"] for f in r["faces"])
    x0, y0, x1, y1 = by["huge.png"]["faces"][0]["box"]
    assert 300 < x0 < 2300 and 200 < y0 < 2200, by["huge.png"]  # box in the original's pixels
    assert by["blank.png"]["score"] is None and by["blank.png"]["error"]["code"] == "detect.no_face"
    assert by["notes.png"]["score"] is None and by["notes.png"]["error"]["code"].startswith("input.")
    assert p.returncode == 2  # one file was not an image
    assert "Traceback" not in p.stderr


def test_detect_missing_weights_is_one_line(tmp_path):
    p = run([tmp_path / "x.png", "--weights", tmp_path / "nope.safetensors"], tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "not found" in p.stderr
