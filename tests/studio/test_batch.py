"""``dhstudio batch`` (issue 17, batch part): rows, resume, per-file errors, interrupts, bad input,
and the Ray engine giving the same rows as the local one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.studio.test_cli_bad_input import REPO, assert_clean_error, run_cli

pytest.importorskip("pyarrow", reason="the batch extra (pyarrow) is not installed")

from studio.batch import TaskSpec, read_results  # noqa: E402
from studio.batch.inputs import collect_files  # noqa: E402
from studio.batch.local import run_local  # noqa: E402
from studio.batch.tasks import COLUMNS, FileTask  # noqa: E402

OBJ_MESH = "# a triangle\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def _jpeg(path: Path, seed: int, size=(160, 120)) -> Path:
    from reconstruct.procedural import scene

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene(size[1], size[0], seed=seed)).save(path, quality=92)
    return path


@pytest.fixture()
def mix(tmp_path, dhs_home):
    """A folder with a signed image, an unsigned image, a corrupt JPEG and a mesh (+ things a walk
    must skip: a hidden file, a symlink out of the folder, a symlink to a folder)."""
    from provenance.manifest import GenerationSpec
    from studio.pipelines.publish import publish

    src = tmp_path / "mix"
    raw = _jpeg(tmp_path / "raw.jpg", 1)
    (src / "sub").mkdir(parents=True)
    publish(raw, src / "signed.jpg", GenerationSpec(model_name="batch-test"))
    _jpeg(src / "sub" / "unsigned.jpg", 2)
    (src / "sub" / "corrupt.jpg").write_bytes(raw.read_bytes()[:400])
    (src / "mesh.obj").write_text(OBJ_MESH)
    (src / ".hidden.jpg").write_bytes(raw.read_bytes())
    os.symlink(raw, src / "outside.jpg")  # out of the tree: skipped
    os.symlink(src / "sub", src / "sublink")  # a folder link: not descended
    return src


def _rows(path) -> dict[str, dict]:
    return {r["path"]: r for r in read_results(path)}


def _batch(args, home, **kw):
    p = run_cli(["batch", *args], home, timeout=kw.pop("timeout", 180), **kw)
    return p


def test_local_verify_mix_resume_and_retry(tmp_path, mix, dhs_home):
    out = tmp_path / "res" / "verify.parquet"
    out.parent.mkdir()
    p = _batch(["verify", mix, "--out", out, "--workers", "2", "--no-content", "--json"], dhs_home)
    assert p.returncode == 1, p.stderr  # finished, with one file in error (the corrupt JPEG)
    s = json.loads(p.stdout)
    assert (s["files"], s["processed"], s["ok"], s["errors"], s["rows"]) == (4, 4, 3, 1, 4)
    assert s["skipped_hidden"] == 1 and s["skipped_links"] == 2
    rows = _rows(out)
    assert list(read_results(out)[0]) == list(COLUMNS)
    by_name = {Path(k).name: v for k, v in rows.items()}
    assert set(by_name) == {"signed.jpg", "unsigned.jpg", "corrupt.jpg", "mesh.obj"}
    for path, r in rows.items():
        assert r["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert r["op"] == "verify" and r["seconds"] >= 0
    assert by_name["signed.jpg"]["label"] == "signed-generated-intact", by_name["signed.jpg"]["reasons"]
    assert by_name["unsigned.jpg"]["label"] == "unsigned-unmarked"
    assert by_name["mesh.obj"]["media_type"] == "model/obj" and by_name["mesh.obj"]["status"] == "ok"
    bad = by_name["corrupt.jpg"]
    assert bad["status"] == "error" and bad["label"] == "unreadable"
    assert bad["error_code"] and bad["error_message"] and "\n" not in bad["error_message"]
    from detect import Verdict

    v = Verdict.from_json(by_name["signed.jpg"]["result_json"])
    assert v.label == "signed-generated-intact" and v.file.sha256 == by_name["signed.jpg"]["sha256"]
    assert not [n for n in os.listdir(out.parent) if n not in ("verify.parquet", ".verify.parquet.lock")]

    # a rerun skips every file already in the results
    p = _batch(["verify", mix, "--out", out, "--workers", "2", "--no-content", "--json"], dhs_home)
    s = json.loads(p.stdout)
    assert p.returncode == 0 and (s["skipped"], s["processed"], s["rows"]) == (4, 0, 4)
    assert _rows(out) == rows

    # a changed file (same path, new bytes) is done again; its row replaces the old one
    _jpeg(mix / "sub" / "unsigned.jpg", 7)
    p = _batch(["verify", mix, "--out", out, "--workers", "2", "--no-content", "--json"], dhs_home)
    s = json.loads(p.stdout)
    assert (s["skipped"], s["processed"], s["rows"]) == (3, 1, 4)
    new = _rows(out)
    k = str(mix / "sub" / "unsigned.jpg")
    assert new[k]["sha256"] != rows[k]["sha256"] and new[k]["label"] == "unsigned-unmarked"

    # --retry-errors runs the error rows again (and only them)
    p = _batch(["verify", mix, "--out", out, "--workers", "1", "--no-content", "--json", "--retry-errors"], dhs_home)
    s = json.loads(p.stdout)
    assert p.returncode == 1 and (s["skipped"], s["processed"], s["errors"]) == (3, 1, 1)


def test_sign_batch_keeps_layout(tmp_path, dhs_home):
    src = tmp_path / "gen"
    _jpeg(src / "a.jpg", 3)
    _jpeg(src / "deep" / "b.jpg", 4)
    (src / "notes.txt").write_text("not media")
    out_dir = src / "signed"  # inside the input folder: never taken as input
    out = src / "sign.parquet"
    p = _batch(["sign", src, "--out", out, "--out-dir", out_dir, "--workers", "2", "--model", "batch-model",
                "--json"], dhs_home)
    assert p.returncode == 1, p.stderr
    assert "created a local CA" in p.stderr
    rows = {Path(r["path"]).name: r for r in read_results(out)}
    assert set(rows) == {"a.jpg", "b.jpg", "notes.txt"}
    assert rows["notes.txt"]["status"] == "error" and rows["notes.txt"]["error_code"] == "input.unsupported_type"
    for name, rel in (("a.jpg", "a.jpg"), ("b.jpg", "deep/b.jpg")):
        r = rows[name]
        assert r["status"] == "ok" and r["signed_path"] == str(out_dir / rel)
        assert len(r["watermark_id"]) == 12 and r["manifest_bytes"] > 0
        assert json.loads(r["result_json"])["watermark_id_hex"] == r["watermark_id"]
    import detect

    v = detect.verify(out_dir / "deep" / "b.jpg", detect.VerifyOptions(content=False))
    assert v.label == "signed-generated-intact"
    assert v.provenance.to_dict()["generator"]["model_name"] == "batch-model"
    # a rerun signs nothing again
    s = json.loads(_batch(["sign", src, "--out", out, "--out-dir", out_dir, "--json"], dhs_home).stdout)
    assert s["skipped"] == 3 and s["processed"] == 0


def _many(folder: Path, n: int) -> Path:
    raw = _jpeg(folder.parent / "one.jpg", 5, size=(96, 96))
    data = raw.read_bytes()
    folder.mkdir()
    for i in range(n):  # distinct bytes (a trailing comment) so every sha256 differs
        (folder / f"f{i:03d}.jpg").write_bytes(data[:-2] + b"\xff\xfe\x00\x06" + i.to_bytes(4, "big") + data[-2:])
    return folder


def _start(args, home):
    env = dict(os.environ, DHSTUDIO_HOME=str(home), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "studio.cli", "batch", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_part(ckpt: Path, proc, timeout=120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if ckpt.is_dir() and any(p.name.startswith("part-") for p in ckpt.iterdir()):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint was written")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_interrupt_keeps_done_rows_and_rerun_goes_on(tmp_path, dhs_home, sig):
    n = 30
    src = _many(tmp_path / "many", n)
    out = tmp_path / "r.parquet"
    ckpt = tmp_path / ".r.parquet.checkpoint"
    args = ["verify", src, "--out", out, "--workers", "1", "--no-content", "--checkpoint-every", "3", "--quiet"]
    proc = _start(args, dhs_home)
    _wait_for_part(ckpt, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + sig, err
        assert "batch stopped" in err and "Traceback" not in err
        assert not ckpt.exists()  # merged into the results file
        done = read_results(out)
    else:
        assert proc.returncode == -sig
        assert not out.exists() and ckpt.is_dir()  # the parts are the progress
        done = []
    left = [p for p in os.listdir(tmp_path) if p.endswith(".part.parquet")]
    assert not left, left
    p = _batch(["verify", src, "--out", out, "--workers", "1", "--no-content", "--json"], dhs_home)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["rows"] == n and s["skipped"] >= max(3, len(done)) and s["processed"] == n - s["skipped"]
    rows = read_results(out)
    assert sorted(r["path"] for r in rows) == sorted(str(f) for f in src.iterdir())
    assert not ckpt.exists()


def test_corrupt_or_foreign_output_is_refused(tmp_path, dhs_home):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in"
    _jpeg(src / "a.jpg", 1, size=(64, 64))
    out = tmp_path / "res" / "r.parquet"
    out.parent.mkdir()
    out.write_bytes(b"PAR1 this is not parquet")
    p = _batch(["verify", src, "--out", out, "--no-content"], dhs_home)
    assert_clean_error(p, "r.parquet", "not a readable parquet file", "nothing was overwritten")
    assert out.read_bytes() == b"PAR1 this is not parquet"
    assert os.listdir(out.parent) == ["r.parquet"]  # no lock, no checkpoint, no temp file
    pq.write_table(pa.table({"path": ["x"]}), out)
    assert_clean_error(_batch(["verify", src, "--out", out], dhs_home), "not dhstudio batch results")
    # another op's results
    out2 = tmp_path / "res" / "d.parquet"
    assert _batch(["verify", src, "--out", out2, "--no-content", "--workers", "1"], dhs_home).returncode == 0
    assert_clean_error(_batch(["detect", src, "--out", out2], dhs_home), "batch verify", "batch detect")


def test_cli_bad_input(tmp_path, dhs_home):
    src = tmp_path / "in"
    _jpeg(src / "a.jpg", 1, size=(64, 64))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / ".hidden").write_text("x")
    out = tmp_path / "r.parquet"
    cases = [
        (["verify", empty, "--out", out], ("no files found",)),
        (["verify", tmp_path / "missing", "--out", out], ("missing", "no such file")),
        (["verify", src, "--out", tmp_path / "r.csv"], (".parquet",)),
        (["verify", src, "--out", out, "--workers", "0"], ("--workers must be >= 1",)),
        (["verify", src, "--out", tmp_path / "nodir" / "r.parquet"], ("does not exist",)),
        (["verify", src, "--out", out, "--address", "auto"], ("--engine ray",)),
        (["verify", src, "--out", out, "--max-frames", "0"], ("--max-frames",)),
        (["sign", src, "--out", out, "--out-dir", src / "a.jpg"], ("not a folder",)),
    ]
    for args, needles in cases:
        p = _batch(args, dhs_home)
        assert_clean_error(p, *needles)
        assert p.returncode == 2
    assert sorted(os.listdir(tmp_path)) == ["dhs_home", "empty", "in"]  # nothing written


def test_unreadable_folder_and_missing_extra(tmp_path, monkeypatch):
    from provenance.errors import InputError
    from studio.batch import _deps

    src = tmp_path / "in"
    (src / "locked").mkdir(parents=True)
    _jpeg(src / "a.jpg", 1, size=(64, 64))
    real = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match=r"cannot read folder .*locked: Permission denied"):
        collect_files([src])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(InputError, match=r"--engine ray needs ray .*install the batch extra"):
        _deps.require("ray", "--engine ray")


def test_walk_rules(tmp_path):
    root = tmp_path / "t"
    (root / "a" / "b").mkdir(parents=True)
    for p in ("x.jpg", "a/y.png", "a/b/z.glb", ".h.jpg", "a/.hid/w.jpg"):
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"x")
    os.symlink(root / "a" / "y.png", root / "in_tree.png")
    os.symlink("/etc/hostname", root / "out_of_tree")
    os.symlink(root / "a", root / "dirlink")
    os.mkfifo(root / "fifo")
    (root / "res.parquet").write_bytes(b"x")
    got = collect_files([root, root / "x.jpg"], exclude=[root / "res.parquet", root / "a" / "b"])
    assert [os.path.relpath(f, root) for f in got.files] == ["in_tree.png", "x.jpg", "a/y.png"]
    assert (got.skipped_links, got.skipped_special, got.skipped_hidden) == (2, 1, 2)


class CrashingTask(FileTask):
    """A worker that dies (as on a segfault) on any file named boom*."""

    def __call__(self, item):
        if Path(item["path"]).name.startswith("boom"):
            os._exit(139)
        return super().__call__(item)


def test_worker_crash_is_one_error_row(tmp_path, dhs_home):
    src = tmp_path / "in"
    paths = [_jpeg(src / f"f{i}.jpg", i, size=(64, 64)) for i in range(5)]
    paths.insert(2, _jpeg(src / "boom.jpg", 9, size=(64, 64)))
    rows = []
    run_local([{"path": str(p)} for p in paths], TaskSpec(op="verify", content=False), 2, rows.append,
              task_cls=CrashingTask)
    by = {Path(r["path"]).name: r for r in rows}
    assert len(rows) == 6 and set(by) == {p.name for p in paths}
    assert by["boom.jpg"]["status"] == "error" and by["boom.jpg"]["error_code"] == "batch.worker_crashed"
    assert all(r["status"] == "ok" for n, r in by.items() if n != "boom.jpg")


def test_detect_rows(tmp_path, dhs_home):
    pytest.importorskip("torch", reason="the body extra (torch) is not installed")
    from detect.score import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("no shipped detector weights")
    img = tmp_path / "flat.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 128, dtype=np.uint8)[None, :, None], (96, 1, 3))).save(img)
    mesh = tmp_path / "m.obj"
    mesh.write_text(OBJ_MESH)
    task = FileTask(TaskSpec(op="detect"))
    r = task({"path": str(img)})
    assert r["status"] == "ok" and r["label"] == "no-face" and r["faces"] == 0 and r["detector"]
    assert json.loads(r["result_json"])["error"]["code"] == "detect.no_face"
    r = task({"path": str(mesh)})
    assert r["status"] == "error" and r["error_code"] == "detect.unsupported_media" and r["media_type"] == "model/obj"


def _comparable(row: dict) -> dict:
    r = dict(row)
    r.pop("seconds")
    v = json.loads(r.pop("result_json"))
    v.pop("elapsed_s", None)
    r["verdict"] = v
    return r


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, from reading its DataContext
def test_ray_engine_gives_the_local_rows(tmp_path, mix, dhs_home):
    pytest.importorskip("ray", reason="the batch extra (ray) is not installed")
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    args = [mix, "--workers", "2", "--no-content", "--json"]
    p = _batch(["verify", "--out", local, *args], dhs_home)
    assert p.returncode == 1, p.stderr
    p = _batch(["verify", "--out", ray_out, "--engine", "ray", *args], dhs_home, timeout=240)
    assert p.returncode == 1, p.stderr
    s = json.loads(p.stdout)
    assert s["engine"] == "ray" and s["processed"] == 4 and s["engine_info"]["workers"] == 2
    assert "Traceback" not in p.stderr
    a = [_comparable(r) for r in read_results(local)]
    b = [_comparable(r) for r in read_results(ray_out)]
    assert a == b
    # same resume rule: the Ray results file is skipped through by a local rerun and vice versa
    s = json.loads(_batch(["verify", "--out", ray_out, *args], dhs_home).stdout)
    assert s["skipped"] == 4 and s["processed"] == 0
    # a file that kills its Ray worker: its block's files are error rows, the batch goes on
    import ray

    from studio.batch.ray_engine import run_ray

    items = [{"path": str(p)} for p in sorted(mix.rglob("*.jpg")) if not p.is_symlink() and "/." not in str(p)]
    boom = _jpeg(tmp_path / "boom.jpg", 9, size=(64, 64))
    items.insert(1, {"path": str(boom)})
    rows = []
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        info = run_ray(items, TaskSpec(op="verify", content=False), 2, rows.append, task_cls=CrashingTask)
    finally:
        ray.shutdown()
    assert info["workers"] == 2
    by = {r["path"]: r for r in rows}
    assert set(by) == {it["path"] for it in items}
    assert by[str(boom)]["error_code"] == "batch.worker_crashed"
    assert sum(r["status"] == "ok" for r in rows) >= 1
