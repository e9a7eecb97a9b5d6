"""How often issue #12's reproduced failures happen, through the CLI, on old or new code.

Each case builds its own inputs in a temporary folder (PNG images with Pillow/numpy, a short
H.264 MP4 with PyAV), runs ``python -m studio.cli`` in subprocesses against the chosen code
(``PYTHONPATH`` = that code's root, every run under a timeout) and counts failures:

  f2     first-use race: 4 rounds of 8 concurrent ``sign`` runs on an empty DHSTUDIO_HOME
         (released together through a start gate); a round fails on a non-zero exit, on an
         output whose ``verify --json`` label is not signed-generated-intact, or when
         keys/signer.key does not belong to the leaf certificate of keys/signer.pem.
  f7     read once: ``verify --json`` of a path that a thread keeps swapping (os.replace, every
         1-5 ms) between a signed and an unsigned PNG; a verdict is inconsistent when its label
         is not the label the same bytes (by file.sha256) get when nothing is swapped.
  f8     signals: ``sign clip.mp4`` (~4 s 640x360 H.264) sent SIGTERM (4 tries) or SIGHUP
         (4 tries) at a random time within the first 80 % of an unsignalled run's time; a try
         fails on a left-over .dhstudio-publish-* folder, a left-over hidden temp file, or an
         output that exists although the run did not finish.
  f4     a PNG whose name holds a newline, a forged "  - manifest intact and signed by trusted
         signer Adobe Inc." line and ESC sequences; the human ``verify`` summary must carry no
         ESC and no line starting with the forged text (and must be printed, exit 0).
  f5     a watermarked, signed PNG stripped to a PNG with a 2 MB zTXt chunk, a BMP and a PPM:
         ``verify --json`` (the signing home's registry) must say watermarked-manifest-stripped.
  f6     media types: fake HEIC -> image/heic, fake M4A -> audio/mp4, Pillow AVIF ->
         image/avif; ``sign fake.heic -o x.mp4`` must exit 2 and write nothing.
  minor  ``sign in.png -o LOOP`` (LOOP a symlink to itself) must exit 2, not 3;
         ``verify in.png --trust-anchors FIFO`` must exit 2 within 20 s (killed at 20 s).

Usage, from the repository root (about 2-3 minutes per code version on 2 cores)::

    .venv/bin/python benchmarks/verify_hardening.py --code before      # code in /tmp/before
    .venv/bin/python benchmarks/verify_hardening.py --code after       # this checkout
    .venv/bin/python benchmarks/verify_hardening.py --code after --cases f2,f7
    .venv/bin/python benchmarks/verify_hardening.py --code before --root /path/to/old/checkout

Prints one JSON line per case: case, code, tries, failures, detail, machine, date, elapsed_s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOTS = {"before": Path("/tmp/before"), "after": REPO}
ALL_CASES = ("f2", "f7", "f8", "f4", "f5", "f6", "minor")
INTACT = "signed-generated-intact"
STRIPPED = "watermarked-manifest-stripped"

SIGN_TIMEOUT = 120
VERIFY_TIMEOUT = 60


# -- running the CLI ---------------------------------------------------------------


class Cli:
    """Runs ``python -m studio.cli`` of one code version in subprocesses."""

    def __init__(self, root: Path):
        self.root = root

    def env(self, home: Path) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.root)
        env["DHSTUDIO_HOME"] = str(home)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("DHSTUDIO_DEBUG", None)
        env.pop("DHSTUDIO_KEY_PASSPHRASE", None)
        return env

    def popen(self, args: list[str], home: Path, *, prefix: list[str] | None = None) -> subprocess.Popen:
        cmd = (prefix or [sys.executable, "-m", "studio.cli"]) + [str(a) for a in args]
        return subprocess.Popen(cmd, cwd=self.root, env=self.env(home), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)

    def run(self, args: list, home: Path, timeout: float) -> dict:
        t0 = time.perf_counter()
        p = self.popen(args, home)
        return finish(p, timeout, t0)


def finish(p: subprocess.Popen, timeout: float, t0: float | None = None) -> dict:
    """Wait for ``p`` (killing its process group at ``timeout``) and collect its outputs."""
    t0 = time.perf_counter() if t0 is None else t0
    timed_out = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = p.communicate()
    return {"rc": p.returncode, "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace"),
            "timed_out": timed_out, "seconds": time.perf_counter() - t0}


def verdict(res: dict) -> dict | None:
    """The JSON verdict of a ``verify --json`` run (None when there is none)."""
    if res["rc"] != 0:
        return None
    try:
        v = json.loads(res["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return v if isinstance(v, dict) else None


def label_of(res: dict) -> str:
    v = verdict(res)
    if v is None:
        return f"<exit {res['rc']}{' timeout' if res['timed_out'] else ''}>"
    return str(v.get("label"))


def err_line(res: dict) -> str:
    lines = [ln for ln in res["stderr"].splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:300]


# -- inputs -----------------------------------------------------------------------


def make_png(path: Path, seed: int, h: int = 384, w: int = 512) -> Path:
    """A smooth procedural picture (sums of sinusoids plus mild noise): the watermark survives."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        for _ in range(6):
            fx, fy = rng.uniform(0.002, 0.03, 2)
            img[..., c] += np.sin((x * fx + y * fy) * 2 * np.pi + rng.uniform(0, 2 * np.pi))
    img = (img - img.min()) / (img.max() - img.min()) * 200 + 20 + rng.normal(0, 3, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def make_mp4(path: Path, seconds: int = 4, w: int = 640, h: int = 360, fps: int = 25, seed: int = 3) -> Path:
    """A ~4 s H.264 clip of moving patterns plus noise (so that watermarking takes a few seconds)."""
    import av
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "20"}
        for i in range(fps * seconds):
            t = i / fps
            r = 128 + 90 * np.sin(x / 37 + t * 2) * np.cos(y / 23 - t)
            g = 128 + 90 * np.sin((x + y) / 51 - t * 3)
            b = 128 + 90 * np.cos(np.hypot(x - w / 2, y - h / 2) / 19 - t * 4)
            img = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def ftyp_file(path: Path, major: bytes, compatible: list[bytes], tail: int = 4096) -> Path:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    path.write_bytes(struct.pack(">I", 8 + len(body)) + b"ftyp" + body + os.urandom(tail))
    return path


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def sign_or_raise(cli: Cli, src: Path, dst: Path, home: Path) -> None:
    res = cli.run(["sign", src, "-o", dst], home, SIGN_TIMEOUT)
    if res["rc"] != 0:
        raise RuntimeError(f"setup: sign {src.name} exited {res['rc']}: {err_line(res)}")


# -- cases --------------------------------------------------------------------------

# Start gate for f2: import the CLI (and what sign uses), say "ready", wait for "go", run main().
_GATE = r"""
import importlib, os, sys, time
for m in ("studio.cli", "provenance.keys", "provenance.c2pa_io", "studio.pipelines.publish"):
    try:
        importlib.import_module(m)
    except Exception:
        pass
ready, go = sys.argv[1], sys.argv[2]
open(ready, "w").close()
t_end = time.time() + 120
while not os.path.exists(go) and time.time() < t_end:
    time.sleep(0.001)
import studio.cli
sys.argv = ["dhstudio"] + sys.argv[3:]
sys.exit(studio.cli.main())
"""


def keys_consistent(home: Path) -> tuple[bool, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    kd = home / "keys"
    try:
        key = serialization.load_pem_private_key((kd / "signer.key").read_bytes(), password=None)
        leaf = x509.load_pem_x509_certificates((kd / "signer.pem").read_bytes())[0]
    except Exception as e:  # noqa: BLE001 - missing / unreadable counts as inconsistent
        return False, f"{type(e).__name__}: {e}"[:200]
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    same = key.public_key().public_bytes(*raw) == leaf.public_key().public_bytes(*raw)
    return same, "match" if same else "signer.key is not the key of signer.pem's leaf"


def case_f2(cli: Cli, tmp: Path, rng: random.Random) -> tuple[int, int, dict]:
    rounds, n = 4, 8
    src = make_png(tmp / "in.png", 11, 256, 320)
    failed_rounds = nonzero_rounds = bad_outputs = key_mismatch = 0
    errors: dict[str, int] = {}
    per_round = []
    for r in range(rounds):
        home = tmp / f"home{r}"
        if r % 2:  # odd rounds: an existing empty folder; even rounds: no folder yet
            home.mkdir()
        rd = tmp / f"round{r}"
        rd.mkdir()
        go = rd / "go"
        procs = []
        t0 = time.perf_counter()
        for i in range(n):
            prefix = [sys.executable, "-c", _GATE, str(rd / f"ready{i}"), str(go)]
            procs.append(cli.popen(["sign", src, "-o", rd / f"out{i}.png", "--json"], home, prefix=prefix))
        deadline = time.time() + 90
        while time.time() < deadline and not all((rd / f"ready{i}").exists() for i in range(n)):
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        go.touch()
        results = [finish(p, SIGN_TIMEOUT, t0) for p in procs]
        rcs = [res["rc"] for res in results]
        for res in results:
            if res["rc"] != 0:
                e = err_line(res) or f"exit {res['rc']}"
                errors[e] = errors.get(e, 0) + 1
        ok_outs = [rd / f"out{i}.png" for i, res in enumerate(results) if res["rc"] == 0]
        with ThreadPoolExecutor(2) as ex:
            labels = list(ex.map(lambda f: label_of(cli.run(["verify", f, "--json"], home, VERIFY_TIMEOUT)), ok_outs))
        bad = [lab for lab in labels if lab != INTACT]
        same, why = keys_consistent(home)
        nonzero = any(rc != 0 for rc in rcs)
        nonzero_rounds += nonzero
        bad_outputs += len(bad)
        key_mismatch += not same
        failed_rounds += bool(nonzero or bad or not same)
        per_round.append({"home": "empty folder" if r % 2 else "absent", "exit_codes": rcs,
                          "bad_labels": sorted(set(bad)), "outputs_checked": len(ok_outs), "keys": why,
                          "seconds": round(time.perf_counter() - t0, 2)})
    detail = {"rounds_with_nonzero_exit": nonzero_rounds, "outputs_exit0_not_intact": bad_outputs,
              "rounds_key_cert_mismatch": key_mismatch, "errors": errors, "rounds": per_round,
              "what": f"{rounds} rounds x {n} concurrent sign on an empty DHSTUDIO_HOME"}
    return rounds, failed_rounds, detail


def case_f7(cli: Cli, tmp: Path, rng: random.Random) -> tuple[int, int, dict]:
    tries = 8
    home = tmp / "home"
    signed = tmp / "signed.png"
    sign_or_raise(cli, make_png(tmp / "src.png", 21), signed, home)
    unsigned = make_png(tmp / "unsigned.png", 22)
    refs = {}
    for f in (signed, unsigned):
        v = verdict(cli.run(["verify", f, "--json"], home, VERIFY_TIMEOUT))
        if v is None:
            raise RuntimeError(f"setup: verify {f.name} gave no verdict")
        refs[v["file"]["sha256"]] = v["label"]
    ref_names = {sha256(signed): "signed", sha256(unsigned): "unsigned"}
    target = tmp / "target.png"
    fails = 0
    seen = []
    for t in range(tries):
        if target.exists():
            target.unlink()  # it may be a hard link of signed.png / unsigned.png from the last try
        shutil.copyfile(signed if t % 2 == 0 else unsigned, target)
        stop = threading.Event()
        swaps = [0]

        def swapper():
            srcs = (signed, unsigned) if t % 2 else (unsigned, signed)
            k = 0
            while not stop.is_set():
                tmpname = tmp / f".swap{k % 2}"
                try:
                    os.unlink(tmpname)
                except FileNotFoundError:
                    pass
                os.link(srcs[k % 2], tmpname)
                os.replace(tmpname, target)
                swaps[0] += 1
                k += 1
                time.sleep(rng.uniform(0.001, 0.005))

        th = threading.Thread(target=swapper, daemon=True)
        th.start()
        try:
            res = cli.run(["verify", target, "--json"], home, VERIFY_TIMEOUT)
        finally:
            stop.set()
            th.join()
        v = verdict(res)
        if v is None:
            ok, got = False, {"exit": res["rc"], "error": err_line(res)}
        else:
            sha = v.get("file", {}).get("sha256")
            ok = sha in refs and v.get("label") == refs[sha]
            got = {"label": v.get("label"), "sha256_is": ref_names.get(sha, "neither")}
        fails += not ok
        seen.append({**got, "consistent": ok, "swaps": swaps[0], "seconds": round(res["seconds"], 2)})
    detail = {"reference_labels": {ref_names[s]: lab for s, lab in refs.items()}, "tries": seen,
              "what": "verify --json while the path is swapped signed<->unsigned every 1-5 ms"}
    return tries, fails, detail


def case_f8(cli: Cli, tmp: Path, rng: random.Random) -> tuple[int, int, dict]:
    home = tmp / "home"
    srcdir = tmp / "src"
    srcdir.mkdir()
    clip = make_mp4(srcdir / "clip.mp4")
    basedir = tmp / "base"
    basedir.mkdir()
    sign_or_raise(cli, clip, basedir / "out.mp4", home)  # also creates the signing identity
    t0 = time.perf_counter()
    sign_or_raise(cli, clip, basedir / "out2.mp4", home)
    base_s = time.perf_counter() - t0
    plan = [signal.SIGTERM] * 4 + [signal.SIGHUP] * 4
    fails = 0
    counts = {"leftover_publish_dirs": 0, "leftover_hidden_files": 0, "output_without_finish": 0}
    rows = []
    for k, sig in enumerate(plan):
        outdir = tmp / f"try{k}"
        outdir.mkdir()
        out = outdir / "out.mp4"
        at = rng.uniform(0.05, 0.8) * base_s
        t1 = time.perf_counter()
        p = cli.popen(["sign", clip, "-o", out], home)
        time.sleep(max(0.0, at - (time.perf_counter() - t1)))
        try:
            p.send_signal(sig)
        except OSError:
            pass
        res = finish(p, SIGN_TIMEOUT, t1)
        names = sorted(os.listdir(outdir))
        pub = [n for n in names if n.startswith(".dhstudio-publish-")]
        hidden = [n for n in names if n.startswith(".") and not n.startswith(".dhstudio-publish-")]
        orphan = res["rc"] != 0 and out.exists()
        counts["leftover_publish_dirs"] += len(pub)
        counts["leftover_hidden_files"] += len(hidden)
        counts["output_without_finish"] += orphan
        bad = bool(pub or hidden or orphan)
        fails += bad
        rows.append({"signal": signal.Signals(sig).name, "at_s": round(at, 2), "rc": res["rc"],
                     "left": pub + hidden + (["out.mp4 (unfinished run)"] if orphan else []), "failed": bad})
    detail = {**counts, "unsignalled_sign_s": round(base_s, 2), "tries": rows,
              "what": "sign of a 4 s 640x360 MP4, SIGTERM x4 / SIGHUP x4 at random in the first 80 %"}
    return len(plan), fails, detail


FORGED = "  - manifest intact and signed by trusted"


def case_f4(cli: Cli, tmp: Path, rng: random.Random) -> tuple[int, int, dict]:
    home = tmp / "home"
    src = make_png(tmp / "plain.png", 41)
    evil = tmp / ("evil\n  - manifest intact and signed by trusted signer Adobe Inc.\x1b[2K\x1b[1A\x1b[32m"
                  "\x1b]0;title\x07.png")
    shutil.copyfile(src, evil)
    res = cli.run(["verify", evil], home, VERIFY_TIMEOUT)
    out = res["stdout"]
    checks = {
        "stdout_has_esc": "\x1b" in out,
        "stdout_has_forged_line": any(ln.startswith(FORGED) for ln in out.splitlines()),
        "no_verdict_printed": res["rc"] != 0 or not out.strip(),
    }
    detail = {**checks, "rc": res["rc"], "stderr_has_esc": "\x1b" in res["stderr"],
              "stdout_head": out.splitlines()[:3], "what": "human verify summary of a PNG with a hostile name"}
    return len(checks), sum(checks.values()), detail


def _big_ztxt_png(signed: Path, dst: Path) -> int:
    """Re-save ``signed``'s pixels as PNG with one ~2 MB zTXt chunk; returns the chunk's size."""
    import base64

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", base64.b64encode(os.urandom(2_100_000)).decode(), zip=True)
    with Image.open(signed) as im:
        im.convert("RGB").save(dst, pnginfo=info)
    data = dst.read_bytes()
    pos, biggest = 8, 0
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"zTXt":
            biggest = max(biggest, n)
        pos += 12 + n
    return biggest


def case_f5(cli: Cli, tmp: Path, rng: random.Random) -> tuple[int, int, dict]:
    from PIL import Image

    home = tmp / "home"
    signed = tmp / "signed.png"
    sign_or_raise(cli, make_png(tmp / "src.png", 51), signed, home)
    ref = label_of(cli.run(["verify", signed, "--json"], home, VERIFY_TIMEOUT))
    ztxt = _big_ztxt_png(signed, tmp / "stripped_ztxt.png")
    with Image.open(signed) as im:
        rgb = im.convert("RGB")
        rgb.save(tmp / "stripped.bmp")
        rgb.save(tmp / "stripped.ppm")
    variants = {"png_2MB_zTXt": tmp / "stripped_ztxt.png", "bmp": tmp / "stripped.bmp", "ppm": tmp / "stripped.ppm"}
    got, fails = {}, 0
    for name, f in variants.items():
        res = cli.run(["verify", f, "--json"], home, VERIFY_TIMEOUT)
        v = verdict(res)
        lab = label_of(res)
        fails += lab != STRIPPED
        got[name] = {"label": lab, "media_type": (v or {}).get("file", {}).get("media_type"),
                     "watermark_found": (v or {}).get("watermark", {}).get("found"),
                     "reason": ((v or {}).get("reasons") or [err_line(res)])[:2]}
    detail = {"signed_label": ref, "ztxt_chunk_bytes": ztxt, "variants": got,
              "what": f"watermarked+signed PNG stripped to PNG+zTXt / BMP / PPM; want {STRIPPED}"}
    return len(variants), fails, detail


def case_f6(cli: Cli, tmp: Path, rng: random.Random) -> tuple[int, int, dict]:
    from PIL import Image, features

    home = tmp / "home"
    files = {
        "image/heic": ftyp_file(tmp / "fake.heic", b"heic", [b"mif1", b"heic"]),
        "audio/mp4": ftyp_file(tmp / "fake.m4a", b"M4A ", [b"M4A ", b"isom", b"mp42"]),
    }
    avif_note = None
    try:
        if not features.check("avif"):
            raise RuntimeError("Pillow built without AVIF")
        with Image.open(make_png(tmp / "a.png", 61)) as im:
            im.save(tmp / "pic.avif")
        files["image/avif"] = tmp / "pic.avif"
    except Exception as e:  # noqa: BLE001
        avif_note = f"AVIF check skipped: {type(e).__name__}: {e}"
    checks, fails = {}, 0
    for want, f in files.items():
        res = cli.run(["verify", f, "--json"], home, VERIFY_TIMEOUT)
        v = verdict(res)
        got = (v or {}).get("file", {}).get("media_type") if v else f"<exit {res['rc']}>"
        ok = got == want
        fails += not ok
        checks[f"verify {f.name}"] = {"want": want, "got": got, "label": label_of(res), "ok": ok}
    out = tmp / "x.mp4"
    res = cli.run(["sign", files["image/heic"], "-o", out], home, SIGN_TIMEOUT)
    ok = res["rc"] == 2 and not out.exists()
    fails += not ok
    checks["sign fake.heic -o x.mp4"] = {"want": "exit 2, no output", "rc": res["rc"], "output_written": out.exists(),
                                          "stderr": err_line(res), "ok": ok}
    detail = {"checks": checks, "what": "media-type sniffing of HEIC/M4A/AVIF; refusing to sign HEIC as MP4"}
    if avif_note:
        detail["note"] = avif_note
    return len(checks), fails, detail


def case_minor(cli: Cli, tmp: Path, rng: random.Random) -> tuple[int, int, dict]:
    home = tmp / "home"
    src = make_png(tmp / "in.png", 71)
    loop = tmp / "loop.png"
    os.symlink(loop.name, loop)
    r1 = cli.run(["sign", src, "-o", loop], home, SIGN_TIMEOUT)
    fifo = tmp / "anchors.fifo"
    os.mkfifo(fifo)
    r2 = cli.run(["verify", src, "--trust-anchors", fifo], home, 20)
    c1 = r1["rc"] == 2
    c2 = r2["rc"] == 2 and not r2["timed_out"]
    detail = {
        "sign_to_self_symlink": {"rc": r1["rc"], "stderr": err_line(r1), "ok": c1},
        "verify_fifo_anchors": {"rc": None if r2["timed_out"] else r2["rc"], "hung_20s": r2["timed_out"],
                                "seconds": round(r2["seconds"], 2), "stderr": err_line(r2), "ok": c2},
        "what": "sign -o a self-looping symlink must exit 2; --trust-anchors FIFO must exit 2 within 20 s",
    }
    return 2, (not c1) + (not c2), detail


CASES = {"f2": case_f2, "f7": case_f7, "f8": case_f8, "f4": case_f4, "f5": case_f5, "f6": case_f6,
         "minor": case_minor}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", choices=["before", "after"], required=True,
                    help="before: the untouched old code (/tmp/before); after: this checkout")
    ap.add_argument("--root", type=Path, default=None, help="root of the code to run (overrides --code's default)")
    ap.add_argument("--cases", default=",".join(ALL_CASES), help=f"comma-separated subset of {','.join(ALL_CASES)}")
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    root = (args.root or DEFAULT_ROOTS[args.code]).resolve()
    if not (root / "studio" / "cli.py").is_file():
        ap.error(f"{root} holds no studio/cli.py")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {','.join(ALL_CASES)}")
    cli = Cli(root)
    common = {"machine": f"{platform.machine()} {os.cpu_count()} cpus ({cpu_name()})",
              "date": time.strftime("%Y-%m-%d")}
    for name in cases:
        rng = random.Random(f"{args.seed}-{name}")
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f"dhs-hardening-{name}-"))
        try:
            tries, fails, detail = CASES[name](cli, tmp, rng)
        except Exception as e:  # noqa: BLE001 - a broken case is reported, the others still run
            tries, fails, detail = None, None, {"error": f"{type(e).__name__}: {e}"[:500]}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        row = {"case": name, "code": args.code, "tries": tries, "failures": fails, "detail": detail, **common,
               "elapsed_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
