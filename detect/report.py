"""Show a Verdict: a few-line human summary for the terminal, a self-contained HTML page.

Everything printed passes through ``printable`` (control characters escaped) and everything in the
HTML through ``html.escape``: a hostile file name or certificate field cannot forge lines. The
content section is drawn without scripts or external resources: the per-face scores as a table,
a video's score timeline as an inline SVG plot (one line per face track, the threshold dashed),
the key frames (``VerifyOptions.content_visuals``) as JPEG data URIs under an SVG layer with the
boxes and the localisation maps. Numbers are drawn only after ``float()``, and an image is drawn
only when it is a base64 JPEG/PNG data URI.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

from provenance.errors import printable

from .verifier import Verdict

_LABEL_COLOUR = {
    "signed-generated-intact": "#1b7f3b",
    "signed-intact": "#1b7f3b",
    "watermarked-manifest-stripped": "#b58100",
    "untrusted-signer": "#b58100",
    "watermarked-unregistered": "#b58100",
    "signed-certificate-expired": "#b58100",
    "signed-tampered": "#b3261e",
    "unreadable": "#b3261e",
    "no-provenance-looks-manipulated": "#b3261e",
    "signed-capture-looks-manipulated": "#b3261e",
    "no-provenance-no-evidence": "#555",
}
_TRACK_COLOURS = ["#1f6fd1", "#c2185b", "#00897b", "#ef6c00", "#6a1b9a", "#827717", "#2e7d32", "#455a64"]
_DATA_URI = re.compile(r"data:image/(jpeg|png);base64,[A-Za-z0-9+/]+={0,2}")


def summary_text(v: Verdict) -> str:
    """Human summary of a verdict, a few lines, safe to print."""
    lines = [f"{printable(v.file.path)}: {v.label}", f"  {printable(v.label_description)}"]
    for r in v.reasons:
        lines.append(f"  - {printable(r)}")
    p = v.provenance
    if p.manifest_found:
        lines.append(f"  C2PA: state {printable(p.state)}, failures {printable(p.failures or [])}")
    w = v.watermark
    if w.found:
        lines.append(f"  watermark: id {w.id_hex} confidence {float(w.confidence or 0):.2f}")
    elif w.error:
        lines.append(f"  watermark: not checked ({printable(w.error.get('message'))})")
    else:
        lines.append("  watermark: none found")
    lines.append(f"  content: {printable(content_summary(v.content))}")
    return "\n".join(lines)


def _num(v, default=None):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def content_summary(c) -> str:
    """One line about the content section (not escaped: the caller escapes)."""
    err = c.error or {}
    if c.status == "not_run":
        return f"not run ({err.get('message', 'no reason given')})"
    if c.status == "not_applicable":
        return f"not applicable ({err.get('message', 'no reason given')})"
    who = f"{c.detector or 'detector'} {c.version or ''}".strip()
    if c.status != "ok" or _num(c.score) is None:
        return f"{who}: {err.get('message', 'no face scored')} ({err.get('code', 'content.error')})"
    n = f"{len(c.tracks)} face track(s)" if c.tracks else f"{len(c.faces)} face(s)"
    line = f"{who}: score {_num(c.score):.3f} ({n})"
    thr = _num(c.threshold)
    if thr is None or not c.calibration:
        return line + ", threshold uncalibrated (score not weighed)"
    from .fuse import fpr_phrase

    rel = ">=" if _num(c.score) >= thr else "<"
    return line + f" {rel} threshold {thr:.3f} at {fpr_phrase(c.calibration)}"


def render_html(verdicts: list[Verdict], *, title: str = "dhstudio verification report",
                images: dict | None = None) -> str:
    """A self-contained HTML page for a list of verdicts (no external resources)."""
    images = images or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        ".card{border:1px solid #ccc;border-radius:8px;padding:1em;margin:1em 0}"
        ".label{display:inline-block;color:#fff;padding:.2em .6em;border-radius:4px;font-weight:600}"
        "pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:22em;font-size:12px}"
        "img{max-width:320px;float:right;margin-left:1em;border:1px solid #ddd}"
        "table.faces{border-collapse:collapse;font-size:13px;margin:.4em 0}"
        "table.faces td,table.faces th{border:1px solid #ddd;padding:.2em .5em;text-align:right}"
        "figure{display:inline-block;margin:.3em .6em .3em 0;font-size:12px;color:#555}"
        "svg text{font-family:system-ui,sans-serif}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for v in verdicts:
        colour = _LABEL_COLOUR.get(v.label, "#555")
        path = v.file.path
        parts.append("<div class='card'>")
        if path in images:
            parts.append(f"<img src='{html.escape(images[path])}' alt='preview'>")
        parts.append(f"<h2>{html.escape(Path(path).name)}</h2>")
        parts.append(f"<span class='label' style='background:{colour}'>{html.escape(v.label)}</span>")
        parts.append(f"<p>{html.escape(v.label_description)}</p><ul>")
        for r in v.reasons:
            parts.append(f"<li>{html.escape(r)}</li>")
        parts.append("</ul>")
        parts.append(_content_html(v.content))
        parts.append("<details><summary>Verdict JSON</summary><pre>")
        parts.append(html.escape(json.dumps(v.to_dict(), indent=2, default=str)))
        parts.append("</pre></details><div style='clear:both'></div></div>")
    parts.append("</body></html>")
    return "".join(parts)


# --------------------------------------------------------------------------- the content section


def _content_html(c) -> str:
    out = ["<h3>Content check</h3>", f"<p>{html.escape(content_summary(c))}</p>"]
    thr = _num(c.threshold) if c.calibration else None
    if c.faces:
        out.append("<table class='faces'><tr><th>face</th><th>box (x0, y0, x1, y1)</th><th>P(fake)</th>"
                   "<th>detection</th><th>map peak</th></tr>")
        for i, f in enumerate(c.faces):
            out.append(_face_row(str(i), f, thr))
        out.append("</table>")
    if c.tracks:
        out.append("<table class='faces'><tr><th>track</th><th>frames</th><th>seen (s)</th><th>P(fake) mean</th>"
                   "<th>max</th><th>counted</th></tr>")
        for t in c.tracks:
            score = _num(t.get("score"))
            out.append(
                f"<tr><td>#{html.escape(str(t.get('id')))}</td><td>{html.escape(str(t.get('frames')))}</td>"
                f"<td>{_fmt(t.get('first_time'), '.2f')} - {_fmt(t.get('last_time'), '.2f')}</td>"
                f"<td style='color:{_score_colour(score, thr)}'>{_fmt(score, '.3f')}</td>"
                f"<td>{_fmt(t.get('max_score'), '.3f')}</td><td>{'yes' if t.get('counted') else 'no'}</td></tr>")
        out.append("</table>")
        out.append(timeline_svg(c.tracks, thr, duration=_num((c.video or {}).get("duration"))))
    frames = [k for k in (c.key_frames or [])[:8] if isinstance(k, dict)]
    if frames:
        out.append("<div>")
        for k in frames:
            out.append(key_frame_svg(k, thr))
        out.append("</div>")
    for n in c.notes or []:
        out.append(f"<p style='font-size:12px;color:#666'>{html.escape(str(n.get('code')))}: "
                   f"{html.escape(str(n.get('message')))}</p>")
    return "".join(out)


def _fmt(v, spec: str) -> str:
    f = _num(v)
    return "-" if f is None else format(f, spec)


def _score_colour(score, thr) -> str:
    if score is None:
        return "#555"
    if thr is not None:
        return "#b3261e" if score >= thr else "#1b7f3b"
    return "#555"


def _face_row(name: str, f: dict, thr) -> str:
    box = f.get("box") or []
    box_txt = ", ".join(_fmt(b, ".0f") for b in box[:4]) if isinstance(box, list) else "-"
    m = f.get("map") if isinstance(f.get("map"), dict) else None
    peak = m.get("peak") if m else None
    map_txt = "-"
    if m and isinstance(peak, list) and len(peak) == 2:
        map_txt = f"{_fmt(m.get('max'), '.2f')} at ({_fmt(peak[0], '.0f')}, {_fmt(peak[1], '.0f')})"
    score = _num(f.get("score"))
    return (f"<tr><td>{html.escape(name)}</td><td>{html.escape(box_txt)}</td>"
            f"<td style='color:{_score_colour(score, thr)}'>{_fmt(score, '.3f')}</td>"
            f"<td>{_fmt(f.get('detection_score'), '.2f')}</td><td>{html.escape(map_txt)}</td></tr>")


def timeline_svg(tracks: list, threshold=None, *, duration=None, width: int = 640, height: int = 180) -> str:
    """P(fake) against time, one polyline per face track, the threshold dashed: an inline SVG."""
    left, right, top, bottom = 40, width - 10, 10, height - 28
    series = []
    t_max = duration or 0.0
    for i, tr in enumerate(tracks):
        pts = []
        for e in tr.get("timeline") or []:
            if isinstance(e, (list, tuple)) and len(e) >= 2:
                t, s = _num(e[0]), _num(e[1])
                if t is not None and s is not None:
                    pts.append((t, min(max(s, 0.0), 1.0)))
        if pts:
            series.append((tr.get("id", i), pts, _TRACK_COLOURS[i % len(_TRACK_COLOURS)]))
            t_max = max(t_max, pts[-1][0])
    t_max = max(t_max, 1e-3)

    def X(t):
        return left + (right - left) * min(max(t / t_max, 0.0), 1.0)

    def Y(s):
        return bottom - (bottom - top) * s

    out = [f"<figure><svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' role='img' aria-label='P(fake) per face track over time'>",
           f"<rect x='{left}' y='{top}' width='{right - left}' height='{bottom - top}' fill='#fafafa' stroke='#bbb'/>"]
    for v in (0.0, 0.5, 1.0):
        out.append(f"<text x='{left - 6}' y='{Y(v) + 4:.1f}' font-size='11' text-anchor='end' fill='#666'>{v:.1f}</text>")
    for k in range(5):
        t = t_max * k / 4
        out.append(f"<text x='{X(t):.1f}' y='{bottom + 14}' font-size='11' text-anchor='middle' fill='#666'>"
                   f"{t:.1f}</text>")
    out.append(f"<text x='{right}' y='{height - 2}' font-size='11' text-anchor='end' fill='#666'>seconds</text>")
    if threshold is not None:
        out.append(f"<line x1='{left}' x2='{right}' y1='{Y(threshold):.1f}' y2='{Y(threshold):.1f}' stroke='#b3261e' "
                   f"stroke-dasharray='5,4'/><text x='{right - 4}' y='{Y(threshold) - 4:.1f}' font-size='11' "
                   f"text-anchor='end' fill='#b3261e'>threshold {threshold:.2f}</text>")
    for tid, pts, col in series:
        if len(pts) == 1:
            x, y = X(pts[0][0]), Y(pts[0][1])
            out.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{col}'/>")
        else:
            p = " ".join(f"{X(t):.1f},{Y(s):.1f}" for t, s in pts)
            out.append(f"<polyline points='{p}' fill='none' stroke='{col}' stroke-width='1.5'/>")
        x, y = X(pts[-1][0]), Y(pts[-1][1])
        out.append(f"<text x='{min(x + 4, right - 20):.1f}' y='{y - 4:.1f}' font-size='11' fill='{col}'>"
                   f"#{html.escape(str(tid))}</text>")
    out.append("</svg><figcaption>P(fake) per face track over time</figcaption></figure>")
    return "".join(out)


def key_frame_svg(k: dict, threshold=None) -> str:
    """One key frame: its JPEG under an SVG layer with each face's box (coloured by its score
    against the threshold) and its localisation map as translucent cells."""
    uri = k.get("image")
    w, h, scale = _num(k.get("width")), _num(k.get("height")), _num(k.get("scale"))
    if not (isinstance(uri, str) and _DATA_URI.fullmatch(uri) and w and h and scale and w <= 4096 and h <= 4096):
        return ""
    w, h = int(w), int(h)
    out = [f"<figure><svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}'>",
           f"<image href='{html.escape(uri)}' x='0' y='0' width='{w}' height='{h}'/>"]
    for f in (k.get("faces") or [])[:64]:
        if not isinstance(f, dict):
            continue
        out.append(_map_cells(f.get("map"), scale))
        box = [_num(b) for b in (f.get("box") or [])[:4]] if isinstance(f.get("box"), list) else []
        if len(box) != 4 or any(b is None for b in box):
            continue
        x0, y0, x1, y1 = (b * scale for b in box)
        score = _num(f.get("score"))
        col = _score_colour(score, threshold) if threshold is not None else "#ffeb3b"
        tag = f"#{f['track']} " if f.get("track") is not None else ""
        out.append(f"<rect x='{x0:.1f}' y='{y0:.1f}' width='{max(x1 - x0, 1):.1f}' height='{max(y1 - y0, 1):.1f}' "
                   f"fill='none' stroke='{col}' stroke-width='2'/>"
                   f"<text x='{x0 + 2:.1f}' y='{max(y0 - 3, 10):.1f}' font-size='11' fill='{col}' stroke='#000' "
                   f"stroke-width='0.3'>{html.escape(tag)}{_fmt(score, '.2f')}</text>")
    t = _num(k.get("t"))
    cap = f"t = {t:.2f} s" if t is not None else "the image"
    out.append(f"</svg><figcaption>{html.escape(cap)}</figcaption></figure>")
    return "".join(out)


def _map_cells(m, scale: float) -> str:
    """A localisation map's grid as translucent red cells over its crop square (nothing without one)."""
    if not isinstance(m, dict) or not isinstance(m.get("grid"), list) or not isinstance(m.get("square"), list):
        return ""
    sq = [_num(v) for v in m["square"][:3]]
    rows = [r for r in m["grid"][:64] if isinstance(r, list)]
    if len(sq) != 3 or any(v is None for v in sq) or not rows:
        return ""
    x0, y0, side = (v * scale for v in sq)
    gh, gw = len(rows), max(len(r) for r in rows)
    cw, ch = side / gw, side / gh
    out = ["<g>"]
    for i, row in enumerate(rows):
        for j, v in enumerate(row[:64]):
            a = _num(v, 0.0)
            if a >= 0.05:
                out.append(f"<rect x='{x0 + j * cw:.1f}' y='{y0 + i * ch:.1f}' width='{cw:.1f}' height='{ch:.1f}' "
                           f"fill='#ff1744' fill-opacity='{min(a, 1.0) * 0.6:.2f}'/>")
    out.append("</g>")
    return "".join(out)


ANNOTATED_EDGE = 1600
"""Longest edge of an annotated image (larger photos are scaled down first)."""


def annotated_image(data: bytes, faces: list, threshold: float | None = None) -> bytes:
    """The image in ``data`` as a JPEG with each scored face's box coloured by its score (green ->
    red, as the annotated video draws them) and its P(fake) written above it; a face at or over
    ``threshold`` gets a thicker box. ``faces`` are the content section's ``{box, score}`` in the
    image's pixels. At most ANNOTATED_EDGE px on the longest edge."""
    import io

    from PIL import Image, ImageDraw

    from .score import load_rgb_scaled
    from .video import _font, score_color

    rgb, to_original = load_rgb_scaled(data, max_edge=ANNOTATED_EDGE)
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    s = 1.0 / float(to_original)
    lw = max(2, round(max(im.size) / 300))
    font = _font(max(12, round(max(im.size) / 40)))
    for f in faces:
        box, score = f.get("box"), f.get("score")
        if box is None or score is None or not all(math.isfinite(float(v)) for v in [*box, score]):
            continue
        x0, y0, x1, y1 = (float(v) * s for v in box)
        col = score_color(float(score))
        hot = threshold is not None and float(score) >= float(threshold)
        d.rectangle([x0, y0, x1, y1], outline=col, width=lw * (2 if hot else 1))
        text = f"P(fake) {float(score):.2f}"
        tb = d.textbbox((0, 0), text, font=font)
        ty = max(0.0, y0 - (tb[3] - tb[1]) - 2 * lw)
        d.rectangle([x0, ty, x0 + (tb[2] - tb[0]) + 2 * lw, ty + (tb[3] - tb[1]) + 2 * lw], fill=col)
        d.text((x0 + lw - tb[0], ty + lw - tb[1]), text, fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=88)
    return buf.getvalue()
