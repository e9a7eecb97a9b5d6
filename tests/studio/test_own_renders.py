"""`dhstudio detect renders`: the studio's own output as a labelled fake source (small and fast here;
the full set is built by the command in BENCHMARKS.md)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

try:
    from reconstruct._deps import require

    require("open3d")
except Exception as e:  # noqa: BLE001 - any failure to load the renderer is a skip reason
    pytest.skip(f"the [body] extra (open3d renderer) is not usable: {e}", allow_module_level=True)

from provenance.errors import InputError, OutputError  # noqa: E402
from studio.pipelines.own_renders import make_own_renders  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_head_renders_folder(tmp_path):
    res = make_own_renders(tmp_path / "r", identities=2, views=2, expressions=1, size=96, progress=False)
    assert res["images"] == 4 and res["by_source"] == {"own/head_synth": 4}
    rows = list(csv.DictReader(open(tmp_path / "r" / "MANIFEST.tsv"), delimiter="\t"))
    assert len(rows) == 4 and len({r["group"] for r in rows}) == 2
    for r in rows:
        im = Image.open(tmp_path / "r" / r["file"])
        assert im.size == (96, 96) and r["split"] in ("train", "val", "test")
    from detect.data import build_manifest, own_renders

    assert len(own_renders(tmp_path / "r")) == 4
    shared = REPO.parent / "shared" / "data"
    if shared.is_dir():
        assert sum(it["source"].startswith("own/") for it in build_manifest(shared, packs=(), renders=tmp_path / "r")) == 4
    # nothing is left next to the folder
    assert sorted(os.listdir(tmp_path)) == ["r"]


def test_bad_arguments_write_nothing(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(OutputError):
        make_own_renders(tmp_path / "exists", identities=1, progress=False)
    with pytest.raises(InputError):
        make_own_renders(tmp_path / "new", identities=-1, progress=False)
    with pytest.raises(InputError, match="body photo"):
        make_own_renders(tmp_path / "new", identities=0, body_photo=tmp_path / "none.png", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["exists"]
    p = subprocess.run([sys.executable, "-m", "studio.cli", "detect", "renders", str(tmp_path / "exists")],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "exists" in p.stderr
