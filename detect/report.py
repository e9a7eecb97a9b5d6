"""Show a Verdict: a few-line human summary for the terminal, a self-contained HTML page.

Everything printed passes through ``printable`` (control characters escaped) and everything in the
HTML through ``html.escape``: a hostile file name or certificate field cannot forge lines.
"""

from __future__ import annotations

import html
import json
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
}


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
    return "\n".join(lines)


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
        "img{max-width:320px;float:right;margin-left:1em;border:1px solid #ddd}</style></head><body>",
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
        parts.append("</ul><details><summary>Verdict JSON</summary><pre>")
        parts.append(html.escape(json.dumps(v.to_dict(), indent=2, default=str)))
        parts.append("</pre></details><div style='clear:both'></div></div>")
    parts.append("</body></html>")
    return "".join(parts)
