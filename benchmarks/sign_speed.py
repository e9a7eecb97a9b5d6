"""Speed of publishing and verifying a 1920x1080 JPEG (issue #2, section 4).

Targets: watermark embed + C2PA sign <= 0.5 s on one core; watermark decode
<= 0.3 s. Run pinned to one core:

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/sign_speed.py

Prints one JSON line per measurement (median of N runs, after a warm-up).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPS = int(os.environ.get("REPS", "7"))


def timeit(fn, reps=REPS):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


def main() -> None:
    from PIL import Image

    from provenance import c2pa_io, keys
    from provenance.manifest import GenerationSpec
    from provenance.watermark import image as wm
    from reconstruct.procedural import scene

    tmp = Path(tempfile.mkdtemp(prefix="dhs-bench-"))
    os.environ["DHSTUDIO_HOME"] = str(tmp / "home")
    identity = keys.load_identity(create=True)
    src = tmp / "in.jpg"
    Image.fromarray(scene(1080, 1920, seed=1)).save(src, quality=92)
    marked, signed = tmp / "marked.jpg", tmp / "signed.jpg"
    spec = GenerationSpec(model_name="bench", watermark_alg=wm.ALGORITHM, watermark_id=0x123456789ABC)

    def embed():
        wm.embed_file(src, marked, 0x123456789ABC)

    def sign():
        c2pa_io.sign_file(marked, signed, spec, identity)

    def embed_and_sign():
        embed()
        sign()

    def decode():
        r = wm.decode_file(signed)
        assert r.found and r.id == 0x123456789ABC

    def decode_unmarked():
        # the worst case: no mark, so every candidate, reader and list path is tried
        r = wm.decode_file(src)
        assert not r.found

    def verify_all():
        import detect

        # provenance only, as in the BENCHMARKS.md rows (the content check came later: issue 14)
        v = detect.verify(signed, detect.VerifyOptions(registry=None, content=False))
        assert v.label == "signed-generated-intact", v.label

    embed()
    sign()
    common = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus visible, affinity {sorted(os.sched_getaffinity(0))}",
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d"),
        "image": "1920x1080 JPEG q92 (procedural scene)",
        "reps": REPS,
    }
    for name, fn, target in (
        ("watermark_embed_file", embed, None),
        ("c2pa_sign_file", sign, None),
        ("embed_plus_sign", embed_and_sign, 0.5),
        ("watermark_decode_file", decode, 0.3),
        ("watermark_decode_file_unmarked", decode_unmarked, 0.3),
        ("verify_full", verify_all, None),
    ):
        med, lo, hi = timeit(fn)
        row = {"bench": name, "median_s": round(med, 4), "min_s": round(lo, 4), "max_s": round(hi, 4),
               "target_s": target, "meets_target": None if target is None else med <= target, **common}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
