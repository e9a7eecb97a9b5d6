"""detect.data: manifests and identity-safe splits, on a small synthetic tree and on the shared data."""

from __future__ import annotations

import csv
import functools
import json
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detect import data as D


# ----------------------------------------------------------------------------- pure functions

def test_faces_real_group():
    assert D.faces_real_group("Abdullah_Gul_0001.jpg") == "faces_real:Abdullah_Gul"
    assert D.faces_real_group("Abdullah_0003.jpg") == "faces_real:Abdullah"  # not Abdullah_Gul
    assert D.faces_real_group("Avinash_12.jpg") == "faces_real:Avinash"
    assert D.faces_real_group("facial-expressions_2868588k.jpg") == "faces_real:facial-expressions"
    assert D.faces_real_group("portrait.jpg") == "faces_real:portrait"  # no number: the file itself
    assert D.faces_real_group("_0001.jpg") == "faces_real:_0001"


def test_split_of_is_stable_and_about_80_10_10():
    # the rule faces_real_color's README gives, checked on fixed values
    assert D.split_of("tw:27") == D.split_of("tw:27")
    counts = {s: 0 for s in D.SPLITS}
    for i in range(20000):
        counts[D.split_of(f"g{i}")] += 1
    assert abs(counts["train"] / 20000 - 0.8) < 0.02
    assert abs(counts["val"] / 20000 - 0.1) < 0.01
    assert abs(counts["test"] / 20000 - 0.1) < 0.01
    import hashlib
    for g in ("utk:abc", "frl_london:001", "faces_real:Colin_Powell"):
        b = int(hashlib.sha1(g.encode()).hexdigest(), 16) % 10
        assert D.split_of(g) == {0: "test", 1: "val"}.get(b, "train")


# ----------------------------------------------------------------------------- a synthetic shared-data tree

def _jpg(path: Path, size=(80, 80)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=80)


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "data"
    fr = root / "faces_real" / "images"
    for name in ("Ann_Lee_0001.jpg", "Ann_Lee_0002.jpg", "Bob_0001.jpg", "Raj_3.jpg", "odd.jpg"):
        _jpg(fr / name)
    _jpg(fr / "Tiny_0001.jpg", size=(30, 40))
    (fr / "Broken_0001.jpg").write_bytes(b"not a jpeg")
    (fr / "notes.txt").write_text("not an image")

    rc = root / "faces_real_color"
    rows = [("images/utkface/a.jpg", "utk:a"), ("images/taiwan_performers/0101a01.jpg", "tw:01"),
            ("images/taiwan_performers/0102b01.jpg", "tw:01"), ("images/frl_london/001_03.jpg", "frl_london:001"),
            ("images/utkface/missing.jpg", "utk:m")]
    for rel, _ in rows[:4]:
        _jpg(rc / rel)
    _jpg(rc / "images" / "utkface" / "unlisted.jpg")
    with open(rc / "MANIFEST.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["file", "group", "split_suggested"])
        for rel, g in rows:
            w.writerow([rel, g, D.split_of(g)])

    fp = root / "faces_fake_public"
    for rel in ("real/0.jpg", "real/1.jpg", "fake/fake_0.jpg", "fake/fake_1.jpg", "real/extra.jpg"):
        _jpg(fp / rel)
    (fp / "split.json").write_text(json.dumps(
        {"train": ["real/0.jpg", "fake/fake_0.jpg"], "val": ["fake/fake_1.jpg"], "test": ["real/1.jpg"]}))
    return root


def test_build_manifest_on_a_small_tree(tree):
    skipped = []
    items = D.build_manifest(tree, skipped=skipped)
    by_path = {it["path"]: it for it in items}
    assert list(by_path) == sorted(by_path)
    assert set(by_path) == {
        "faces_real/images/Ann_Lee_0001.jpg", "faces_real/images/Ann_Lee_0002.jpg",
        "faces_real/images/Bob_0001.jpg", "faces_real/images/Raj_3.jpg", "faces_real/images/odd.jpg",
        "faces_real_color/images/utkface/a.jpg", "faces_real_color/images/taiwan_performers/0101a01.jpg",
        "faces_real_color/images/taiwan_performers/0102b01.jpg", "faces_real_color/images/frl_london/001_03.jpg",
        "faces_fake_public/real/0.jpg", "faces_fake_public/real/1.jpg",
        "faces_fake_public/fake/fake_0.jpg", "faces_fake_public/fake/fake_1.jpg",
    }
    a = by_path["faces_real/images/Ann_Lee_0001.jpg"]
    assert a == {"path": a["path"], "source": "faces_real", "label": 0, "group": "faces_real:Ann_Lee",
                 "split": D.split_of("faces_real:Ann_Lee"), "width": 80, "height": 80, "mode": "RGB"}
    assert by_path["faces_real/images/odd.jpg"]["group"] == "faces_real:odd"
    tw = by_path["faces_real_color/images/taiwan_performers/0101a01.jpg"]
    assert tw["source"] == "faces_real_color/taiwan_performers" and tw["group"] == "tw:01"
    f0 = by_path["faces_fake_public/fake/fake_0.jpg"]
    assert (f0["source"], f0["label"], f0["split"]) == ("faces_fake_public/fake", 1, "train")
    assert by_path["faces_fake_public/real/1.jpg"]["split"] == "test"
    assert by_path["faces_fake_public/real/1.jpg"]["label"] == 0

    reasons = {s["path"]: s["reason"] for s in skipped}
    assert "smaller than 64 px" in reasons["faces_real/images/Tiny_0001.jpg"]
    assert "cannot read image" in reasons["faces_real/images/Broken_0001.jpg"]
    assert "missing" in reasons["faces_real_color/images/utkface/missing.jpg"]
    assert "not in MANIFEST.tsv" in reasons["faces_real_color/images/utkface/unlisted.jpg"]
    assert "not in split.json" in reasons["faces_fake_public/real/extra.jpg"]
    assert not any("notes.txt" in p for p in reasons)

    # min_side is a parameter; packs can be chosen
    assert "faces_real/images/Tiny_0001.jpg" in {it["path"] for it in D.build_manifest(tree, min_side=16)}
    only = D.build_manifest(tree, packs=["faces_fake_public"])
    assert {it["source"] for it in only} == {"faces_fake_public/real", "faces_fake_public/fake"}


def test_missing_packs_and_folder(tree, tmp_path):
    import shutil
    shutil.rmtree(tree / "faces_real")
    skipped = []
    items = D.build_manifest(tree, skipped=skipped)
    assert not any(it["source"] == "faces_real" for it in items)
    assert {"path": "faces_real", "reason": "pack absent (no faces_real/images folder)"} in skipped
    with pytest.raises(FileNotFoundError, match="absent"):
        D.build_manifest(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown packs"):
        D.build_manifest(tree, packs=["video_samples"])


def test_split_json_with_a_file_in_two_splits_is_an_error(tree):
    (tree / "faces_fake_public" / "split.json").write_text(json.dumps(
        {"train": ["real/0.jpg"], "val": ["real/0.jpg"], "test": []}))
    with pytest.raises(ValueError, match="both"):
        D.build_manifest(tree)


def test_write_load_select_round_trip(tree, tmp_path):
    skipped = []
    items = D.build_manifest(tree, skipped=skipped)
    out = tmp_path / "m.json"
    D.write_manifest(items, out, skipped=skipped, shared_data=tree)
    doc = json.loads(out.read_text())
    assert doc["schema"] == D.MANIFEST_SCHEMA and doc["skipped"] == skipped
    assert doc["counts"]["total"]["total"] == len(items)
    back = D.load_manifest(out)
    assert back == items

    assert {it["source"] for it in D.select(back, source="faces_real_color")} == {
        "faces_real_color/utkface", "faces_real_color/taiwan_performers", "faces_real_color/frl_london"}
    assert D.select(back, label=1) == [it for it in back if it["source"] == "faces_fake_public/fake"]
    assert all(it["split"] in ("val", "test") for it in D.select(back, split=["val", "test"]))
    assert D.select(back, split="train", source="faces_fake_public/fake", label=1) == [
        it for it in back if it["path"] == "faces_fake_public/fake/fake_0.jpg"]
    with pytest.raises(ValueError, match="split"):
        D.select(back, split="dev")


def test_load_manifest_rejects_bad_files(tmp_path):
    p = tmp_path / "m.json"
    p.write_text("{nope")
    with pytest.raises(ValueError, match="not JSON"):
        D.load_manifest(p)
    p.write_text(json.dumps({"schema": "other/9", "items": []}))
    with pytest.raises(ValueError, match="schema"):
        D.load_manifest(p)
    good = {"path": "a.jpg", "source": "faces_real", "label": 0, "group": "g", "split": "train"}
    for bad in ({**good, "label": 2}, {**good, "split": "dev"}, {k: v for k, v in good.items() if k != "group"},
                {**good, "label": True}):
        p.write_text(json.dumps({"schema": D.MANIFEST_SCHEMA, "items": [bad]}))
        with pytest.raises(ValueError, match="item 0"):
            D.load_manifest(p)
    with pytest.raises(ValueError, match="label"):
        D.write_manifest([{**good, "label": 5}], tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_cli(tree, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert D.main([str(tree), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "faces_fake_public/fake" in text and "skipped 1: smaller than 64 px" in text
    assert D.load_manifest(out)
    assert D.main([str(tmp_path / "nowhere")]) == 2
    assert "absent" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the real shared data

@functools.lru_cache(maxsize=1)
def _real(root: str):
    skipped = []
    return D.build_manifest(Path(root), skipped=skipped), skipped


@pytest.mark.shared
def test_no_group_in_two_splits(shared_data):
    items, _ = _real(str(shared_data))
    split_of_group = defaultdict(set)
    for it in items:
        split_of_group[it["group"]].add(it["split"])
    crossing = {g: s for g, s in split_of_group.items() if len(s) > 1}
    assert not crossing
    assert {it["split"] for it in items} == set(D.SPLITS)


@pytest.mark.shared
def test_fake_public_matches_split_json_exactly(shared_data):
    items, skipped = _real(str(shared_data))
    fixed = json.loads((shared_data / "faces_fake_public" / "split.json").read_text())
    got = defaultdict(list)
    for it in items:
        if it["source"].startswith("faces_fake_public/"):
            got[it["split"]].append(it["path"].removeprefix("faces_fake_public/"))
    assert {s: sorted(v) for s, v in got.items()} == {s: sorted(v) for s, v in fixed.items()}
    assert not [s for s in skipped if s["path"].startswith("faces_fake_public")]
    for it in items:
        if it["source"].startswith("faces_fake_public/"):
            assert it["label"] == (1 if it["source"].endswith("/fake") else 0)


@pytest.mark.shared
def test_faces_real_color_reproduces_split_suggested(shared_data):
    items, _ = _real(str(shared_data))
    with open(shared_data / "faces_real_color" / "MANIFEST.tsv", newline="") as f:
        suggested = {"faces_real_color/" + r["file"]: (r["split_suggested"], r["group"])
                     for r in csv.DictReader(f, delimiter="\t")}
    ours = {it["path"]: (it["split"], it["group"]) for it in items if it["source"].startswith("faces_real_color/")}
    assert ours == suggested


@pytest.mark.shared
def test_real_counts(shared_data):
    items, skipped = _real(str(shared_data))
    t = D.count_table(items)
    # only the StyleGAN2 faces are fake
    assert {it["source"] for it in items if it["label"] == 1} == {"faces_fake_public/fake"}
    assert t["faces_fake_public/real"]["total"] == 600 and t["faces_fake_public/fake"]["total"] == 200
    assert sum(t[s]["total"] for s in t if s.startswith("faces_real_color/")) == 4263
    assert t["faces_real"]["total"] + sum(1 for s in skipped if s["path"].startswith("faces_real/")) == 3124
    assert all("smaller than" in s["reason"] for s in skipped)
    # LFW-named files of one person share a group
    for it in items:
        if it["source"] == "faces_real":
            name = Path(it["path"]).stem.rsplit("_", 1)[0]
            assert it["group"] in (f"faces_real:{name}", f"faces_real:{Path(it['path']).stem}")
    for it in items[:: max(1, len(items) // 50)]:
        assert (shared_data / it["path"]).is_file()


def test_data_module_is_light():
    import subprocess
    import sys
    code = "import sys, detect.data; assert 'torch' not in sys.modules; print('ok')"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_own_renders_folder(tmp_path):
    """Rows of a renders folder become label-1 items with absolute paths; bad rows are listed, not kept."""
    (tmp_path / "images" / "head_synth").mkdir(parents=True)
    Image.new("RGB", (96, 96), (30, 20, 10)).save(tmp_path / "images" / "head_synth" / "a.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "images" / "head_synth" / "small.png")
    rows = [("images/head_synth/a.png", "own/head_synth", "own_head:1", "train"),
            ("images/head_synth/small.png", "own/head_synth", "own_head:2", "test"),
            ("images/head_synth/gone.png", "own/head_synth", "own_head:3", "test"),
            ("images/head_synth/a.png", "faces_real", "own_head:1", "train"),  # not an own/ source
            ("images/head_synth/a.png", "own/head_synth", "own_head:1", "holdout")]  # unknown split
    (tmp_path / "MANIFEST.tsv").write_text("file\tsource\tgroup\tsplit\tgenerator\n"
                                           + "".join("\t".join(r) + "\tx\n" for r in rows))
    skipped: list = []
    items = D.own_renders(tmp_path, skipped=skipped)
    assert len(items) == 1 and items[0]["label"] == 1 and Path(items[0]["path"]).is_absolute()
    assert items[0]["source"] == "own/head_synth" and items[0]["width"] == 96
    assert len(skipped) == 4
    with pytest.raises(FileNotFoundError, match="not a renders folder"):
        D.own_renders(tmp_path / "images")
