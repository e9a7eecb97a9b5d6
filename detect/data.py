"""Face data manifests and identity-safe splits for detector training and evaluation (no training).

One manifest lists every usable face image in the shared data packs, one dict per image::

    {"path": "faces_real_color/images/utkface/1_0_0_2016....jpg",  # relative to the shared data
     "source": "faces_real_color/utkface",  # pack, or pack/sub-set
     "label": 0,                            # 0 real, 1 fake
     "group": "utk:3f1c...",                # identity key: one person -> one group
     "split": "train",                      # "train" | "val" | "test"
     "width": 200, "height": 200, "mode": "RGB"}

Packs and their identity groups:

- ``faces_real`` (label 0): LFW-style file names ``First_Last_0003.jpg`` and ``Name_12.jpg`` name
  the person, so the group is ``faces_real:<name>`` (the stem without its trailing ``_<digits>``,
  also with one trailing letter: ``facial-expressions_2868588k`` -> ``facial-expressions``: those
  four files show one person). A stem without that pattern is its own group.
- ``faces_real_color`` (label 0): the ``group`` column of its MANIFEST.tsv (``tw:<performer>``,
  ``frl_london:<id>``, ``utk:<sha1>``...); source ``faces_real_color/<folder>``.
- ``faces_fake_public`` (real FFHQ label 0, StyleGAN2 label 1): the pack's own ``split.json``,
  fixed; group ``faces_fake_public:<file>``; source ``faces_fake_public/real`` or ``/fake``.

- the studio's own renders (``build_manifest(..., renders=FOLDER)``, made by ``dhstudio detect
  renders``; :func:`own_renders`): label 1, source ``own/<kind>``, the group and split the renderer
  wrote in its ``MANIFEST.tsv`` (one synthetic identity per group), absolute paths.

Every other pack is split by a stable hash of the group (:func:`split_of`: sha1 of the group,
mod 10 -> 0 test, 1 val, 2-9 train; the rule faces_real_color's README suggests, so its
``split_suggested`` column is reproduced exactly), so no identity crosses splits.

Images are skipped, with a reason, when they cannot be decoded or are smaller than ``min_side``.

Example::

    >>> items = build_manifest(Path("../shared/data"))
    >>> write_manifest(items, "faces.json")
    >>> train_real = select(load_manifest("faces.json"), split="train", label=0)

Command line: ``python -m detect.data [SHARED_DATA] [--out manifest.json]`` prints the counts.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

__all__ = [
    "MANIFEST_SCHEMA",
    "SPLITS",
    "build_manifest",
    "count_table",
    "faces_real_group",
    "load_manifest",
    "own_renders",
    "select",
    "split_of",
    "write_manifest",
]

MANIFEST_SCHEMA = "dhstudio.detect.manifest/1"
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_MIN_SIDE = 64
_FIELDS = {"path": str, "source": str, "label": int, "group": str, "split": str}
_NUMBERED = re.compile(r"^(?P<name>.+?)_\d+[A-Za-z]?$")


# ----------------------------------------------------------------------------- groups and splits

def split_of(group: str) -> str:
    """The split of an identity group: ``int(sha1(group)) % 10`` -> 0 test, 1 val, 2-9 train.

    Stable across runs, machines and Python versions (not Python's ``hash``).
    """
    bucket = int(hashlib.sha1(group.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def faces_real_group(filename: str) -> str:
    """Identity group of a ``faces_real`` file: its stem without the trailing ``_<number>``
    (``Abdullah_Gul_0001.jpg`` -> ``faces_real:Abdullah_Gul``, ``Avinash_12.jpg`` ->
    ``faces_real:Avinash``); the stem itself when there is no such number."""
    stem = Path(filename).stem
    m = _NUMBERED.match(stem)
    return "faces_real:" + (m.group("name") if m else stem)


# ----------------------------------------------------------------------------- building

def _probe(path: Path, min_side: int) -> tuple[dict | None, str | None]:
    """Image size and mode from the header, or the reason it is not usable."""
    try:
        with Image.open(path) as im:
            w, h, mode = im.size[0], im.size[1], im.mode
    except Exception as e:  # noqa: BLE001 - any decoder error means "not usable"
        return None, f"cannot read image: {type(e).__name__}: {e}"
    if min(w, h) < min_side:
        return None, f"smaller than {min_side} px ({w}x{h})"
    return {"width": int(w), "height": int(h), "mode": mode}, None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _add(items, skipped, root: Path, path: Path, min_side: int, **fields) -> None:
    rel = path.relative_to(root).as_posix()
    info, why = _probe(path, min_side)
    if why is not None:
        skipped.append({"path": rel, "reason": why})
        return
    items.append({"path": rel, **fields, **info})


def _faces_real(root: Path, items: list, skipped: list, min_side: int) -> None:
    folder = root / "faces_real" / "images"
    if not folder.is_dir():
        skipped.append({"path": "faces_real", "reason": "pack absent (no faces_real/images folder)"})
        return
    for p in _images_in(folder):
        group = faces_real_group(p.name)
        _add(items, skipped, root, p, min_side, source="faces_real", label=0, group=group,
             split=split_of(group))


def _faces_real_color(root: Path, items: list, skipped: list, min_side: int) -> None:
    pack = root / "faces_real_color"
    table = pack / "MANIFEST.tsv"
    if not table.is_file():
        skipped.append({"path": "faces_real_color", "reason": "pack absent (no faces_real_color/MANIFEST.tsv)"})
        return
    listed = set()
    with open(table, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            rel = row.get("file") or ""
            group = row.get("group") or ""
            parts = Path(rel).parts
            if len(parts) < 3 or parts[0] != "images" or not group:
                skipped.append({"path": f"faces_real_color/{rel}",
                                "reason": "MANIFEST.tsv row without images/<set>/<file> or group"})
                continue
            p = pack / rel
            listed.add(p)
            if not p.is_file():
                skipped.append({"path": f"faces_real_color/{rel}", "reason": "listed in MANIFEST.tsv but missing"})
                continue
            _add(items, skipped, root, p, min_side, source=f"faces_real_color/{parts[1]}", label=0,
                 group=group, split=split_of(group))
    if (pack / "images").is_dir():
        for p in sorted((pack / "images").rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p not in listed:
                skipped.append({"path": p.relative_to(root).as_posix(),
                                "reason": "not in MANIFEST.tsv (no identity group)"})


def _faces_fake_public(root: Path, items: list, skipped: list, min_side: int) -> None:
    pack = root / "faces_fake_public"
    split_file = pack / "split.json"
    if not split_file.is_file():
        skipped.append({"path": "faces_fake_public", "reason": "pack absent (no faces_fake_public/split.json)"})
        return
    fixed = json.loads(split_file.read_text(encoding="utf-8"))
    split_by_file: dict[str, str] = {}
    for split in SPLITS:
        for rel in fixed.get(split, []):
            if rel in split_by_file:
                raise ValueError(f"{split_file}: {rel} is in both {split_by_file[rel]} and {split}")
            split_by_file[rel] = split
    unknown = set(fixed) - set(SPLITS)
    if unknown:
        raise ValueError(f"{split_file}: unknown splits {sorted(unknown)}; expected {SPLITS}")
    for rel, split in sorted(split_by_file.items()):
        kind = Path(rel).parts[0] if Path(rel).parts else ""
        p = pack / rel
        if kind not in ("real", "fake"):
            skipped.append({"path": f"faces_fake_public/{rel}", "reason": "split.json entry not under real/ or fake/"})
            continue
        if not p.is_file():
            skipped.append({"path": f"faces_fake_public/{rel}", "reason": "listed in split.json but missing"})
            continue
        _add(items, skipped, root, p, min_side, source=f"faces_fake_public/{kind}",
             label=1 if kind == "fake" else 0, group=f"faces_fake_public:{rel}", split=split)
    for kind in ("real", "fake"):
        if (pack / kind).is_dir():
            for p in _images_in(pack / kind):
                rel = f"{kind}/{p.name}"
                if rel not in split_by_file:
                    skipped.append({"path": f"faces_fake_public/{rel}", "reason": "not in split.json"})


PACKS = {
    "faces_real": _faces_real,
    "faces_real_color": _faces_real_color,
    "faces_fake_public": _faces_fake_public,
}
"""Pack folder -> reader. Other packs (video_samples' 22 DFDC crops) are for pipeline tests only."""

RENDERS_SCHEMA_FILE = "MANIFEST.tsv"


def own_renders(folder: Path, *, min_side: int = DEFAULT_MIN_SIDE, skipped: list | None = None) -> list[dict]:
    """The studio's own renders (``dhstudio detect renders``, :mod:`studio.pipelines.own_renders`):
    every row of ``folder/MANIFEST.tsv`` as a manifest item, label 1, ``path`` absolute (it does not
    live under the shared data), source ``own/<kind>``, the group and split the renderer gave
    (identity groups split by :func:`split_of`; NeRF avatars and the body turntable as listed)."""
    folder = Path(folder).resolve()
    table = folder / RENDERS_SCHEMA_FILE
    if not table.is_file():
        raise FileNotFoundError(f"{folder} is not a renders folder (no {RENDERS_SCHEMA_FILE})")
    items: list[dict] = []
    left: list[dict] = []
    with open(table, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            rel, src, group, split = (row.get(k) or "" for k in ("file", "source", "group", "split"))
            if not rel or not src.startswith("own/") or not group or split not in SPLITS:
                left.append({"path": str(folder / rel), "reason": "MANIFEST.tsv row without file, own/ source, "
                                                                  "group or a known split"})
                continue
            p = folder / rel
            if not p.is_file():
                left.append({"path": str(p), "reason": "listed in MANIFEST.tsv but missing"})
                continue
            info, why = _probe(p, min_side)
            if why is not None:
                left.append({"path": str(p), "reason": why})
                continue
            items.append({"path": str(p), "source": src, "label": 1, "group": group, "split": split, **info})
    if skipped is not None:
        skipped.extend(left)
    return items


def build_manifest(shared_data: Path, *, packs: Iterable[str] = tuple(PACKS), min_side: int = DEFAULT_MIN_SIDE,
                   skipped: list | None = None, renders: Path | None = None) -> list[dict]:
    """Every usable face image of the face packs under ``shared_data``, sorted by path.

    Args:
        shared_data: the shared data folder (``../shared/data`` next to the repository).
        packs: which packs to read (keys of :data:`PACKS`).
        min_side: images whose shorter side is below this are skipped.
        skipped: if given, receives ``{"path", "reason"}`` for every pack, file or row left out.
        renders: a folder of the studio's own renders (:func:`own_renders`), added as fakes.

    Raises:
        FileNotFoundError: ``shared_data`` is not a folder.
        ValueError: an unknown pack, or a split.json that puts a file in two splits.
    """
    root = Path(shared_data)
    if not root.is_dir():
        raise FileNotFoundError(f"shared data folder {root} is absent")
    unknown = [p for p in packs if p not in PACKS]
    if unknown:
        raise ValueError(f"unknown packs {unknown}; known: {sorted(PACKS)}")
    items: list[dict] = []
    left_out: list[dict] = []
    for name in packs:
        PACKS[name](root, items, left_out, min_side)
    if renders is not None:
        items += own_renders(renders, min_side=min_side, skipped=left_out)
    if skipped is not None:
        skipped.extend(left_out)
    items.sort(key=lambda it: it["path"])
    return items


# ----------------------------------------------------------------------------- reading, writing, selecting

def count_table(manifest: list[dict]) -> dict:
    """``{source: {"train": n, "val": n, "test": n, "total": n, "groups": n}}`` plus a ``"total"``
    row, and ``"by_label"``: ``{"0": n, "1": n}`` per split."""
    out: dict = {}
    groups: dict[str, set] = {}
    for it in manifest:
        row = out.setdefault(it["source"], {s: 0 for s in SPLITS})
        row[it["split"]] += 1
        groups.setdefault(it["source"], set()).add(it["group"])
    total = {s: 0 for s in SPLITS}
    for src, row in out.items():
        row["total"] = sum(row[s] for s in SPLITS)
        row["groups"] = len(groups[src])
        for s in SPLITS:
            total[s] += row[s]
    total["total"] = sum(total[s] for s in SPLITS)
    total["groups"] = len({it["group"] for it in manifest})
    table = dict(sorted(out.items()))
    table["total"] = total
    by_label = Counter((it["split"], it["label"]) for it in manifest)
    table["by_label"] = {s: {"0": by_label[(s, 0)], "1": by_label[(s, 1)]} for s in SPLITS}
    return table


def _check_item(it, where: str) -> None:
    if not isinstance(it, dict):
        raise ValueError(f"{where}: not an object")
    for k, t in _FIELDS.items():
        if not isinstance(it.get(k), t) or isinstance(it.get(k), bool):
            raise ValueError(f"{where}: field {k!r} missing or not {t.__name__}")
    if it["label"] not in (0, 1):
        raise ValueError(f"{where}: label must be 0 or 1, got {it['label']}")
    if it["split"] not in SPLITS:
        raise ValueError(f"{where}: split must be one of {SPLITS}, got {it['split']!r}")


def write_manifest(manifest: list[dict], path, *, skipped: list | None = None,
                   shared_data: Path | None = None) -> None:
    """Write the manifest as JSON (atomically): ``{"schema", "created", "shared_data", "counts",
    "skipped", "items"}``. ``shared_data`` is recorded for information only; paths in items stay
    relative to it."""
    from provenance.media import write_atomic

    for i, it in enumerate(manifest):
        _check_item(it, f"item {i}")
    doc = {
        "schema": MANIFEST_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "shared_data": None if shared_data is None else str(shared_data),
        "counts": count_table(manifest),
        "skipped": list(skipped or []),
        "items": manifest,
    }
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")


def load_manifest(path) -> list[dict]:
    """Read a manifest written by :func:`write_manifest`; ``ValueError`` names what is wrong."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != MANIFEST_SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{p}: schema {got!r}, expected {MANIFEST_SCHEMA!r}")
    items = doc.get("items")
    if not isinstance(items, list):
        raise ValueError(f"{p}: 'items' must be a list")
    for i, it in enumerate(items):
        _check_item(it, f"{p}: item {i}")
    return items


def _as_set(v) -> set | None:
    if v is None:
        return None
    if isinstance(v, (str, int)):
        return {v}
    return set(v)


def select(manifest: list[dict], split=None, source=None, label=None) -> list[dict]:
    """The items matching every filter given. Each filter is one value or a collection of values;
    a ``source`` also matches its sub-sets (``"faces_real_color"`` matches
    ``"faces_real_color/utkface"``)."""
    splits, sources, labels = _as_set(split), _as_set(source), _as_set(label)
    if splits is not None and not splits <= set(SPLITS):
        raise ValueError(f"split must be among {SPLITS}, got {sorted(map(str, splits))}")

    def source_ok(s: str) -> bool:
        return any(s == q or s.startswith(q + "/") for q in sources)

    return [it for it in manifest
            if (splits is None or it["split"] in splits)
            and (labels is None or it["label"] in labels)
            and (sources is None or source_ok(it["source"]))]


# ----------------------------------------------------------------------------- command line

def _format_counts(table: dict) -> str:
    lines = [f"{'source':34s} {'train':>6s} {'val':>6s} {'test':>6s} {'total':>6s} {'groups':>7s}"]
    for src, row in table.items():
        if src == "by_label":
            continue
        lines.append(f"{src:34s} {row['train']:6d} {row['val']:6d} {row['test']:6d} {row['total']:6d} {row['groups']:7d}")
    bl = table["by_label"]
    lines.append("real/fake per split: " + ", ".join(f"{s} {bl[s]['0']}/{bl[s]['1']}" for s in SPLITS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from provenance.errors import DhsError

    ap = argparse.ArgumentParser(prog="python -m detect.data", description=__doc__.splitlines()[0])
    ap.add_argument("shared_data", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out", help="write the manifest JSON here")
    ap.add_argument("--min-side", type=int, default=DEFAULT_MIN_SIDE)
    a = ap.parse_args(argv)
    skipped: list[dict] = []
    try:
        items = build_manifest(Path(a.shared_data), min_side=a.min_side, skipped=skipped)
        if a.out:
            write_manifest(items, a.out, skipped=skipped, shared_data=Path(a.shared_data))
    except (OSError, ValueError, DhsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_format_counts(count_table(items)))
    reasons = Counter(s["reason"].split(" (")[0] for s in skipped)
    for why, n in sorted(reasons.items()):
        print(f"skipped {n}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
