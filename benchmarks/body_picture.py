"""README picture for the body reconstruction: the input photo next to our renders of the mesh.

    .venv/bin/python benchmarks/body_picture.py BODY.glb --photo ../shared/data/body_photos/ryota.png \
        -o docs/body_ryota.png

BODY.glb is what ``dhstudio body reconstruct`` wrote for the photo. The strip shows the photo and
the mesh seen from the front, the side (90 degrees), the back and 45 degrees, rendered by
``reconstruct.body.render`` with the mesh's vertex colours, all at the same height.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mesh", type=Path)
    ap.add_argument("--photo", type=Path, required=True)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()

    import trimesh

    from reconstruct.body.render import look_at_body, prepare, render, turntable_bounds

    mesh = trimesh.load(args.mesh, force="mesh", process=False)
    scene = prepare(mesh)
    bounds = turntable_bounds(scene.bounds, scene.vertices)
    s = args.size
    tiles = []
    with Image.open(args.photo) as im:
        photo = im.convert("RGBA")
        bg = Image.new("RGBA", photo.size, (235, 235, 235, 255))
        photo = Image.alpha_composite(bg, photo).convert("RGB")
        photo = photo.resize((round(photo.width * s / photo.height), s), Image.Resampling.LANCZOS)
    tiles.append(np.asarray(photo))
    for yaw in (0.0, 90.0, 180.0, 45.0):
        cam = look_at_body(bounds, yaw, 5.0, s, fill=0.9)
        tiles.append(render(scene, cam, background=(235, 235, 235), supersample=2).rgb)
    gap = np.full((s, 8, 3), 255, np.uint8)
    strip = tiles[0]
    for t in tiles[1:]:
        strip = np.concatenate([strip, gap, t], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
