"""DESIGN.md package boundaries: who may import whom, and provenance stays torch-free."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OURS = {"studio", "reconstruct", "provenance", "detect"}
ALLOWED = {
    "provenance": {"provenance"},
    "reconstruct": {"reconstruct"},
    "detect": {"detect", "provenance", "reconstruct.faces"},
    "studio": OURS,
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_import_boundaries():
    bad = []
    for pkg, allowed in ALLOWED.items():
        for f in (REPO / pkg).rglob("*.py"):
            for mod in _imports(f):
                top = mod.split(".")[0]
                if top in OURS and not any(mod == a or mod.startswith(a + ".") or a == top and "." not in a
                                           for a in allowed):
                    bad.append(f"{f.relative_to(REPO)} imports {mod}")
    assert not bad, bad


def test_provenance_is_light():
    code = (
        "import sys, pkgutil, importlib, provenance\n"
        "for m in pkgutil.walk_packages(provenance.__path__, 'provenance.'):\n"
        "    importlib.import_module(m.name)\n"
        "heavy = [m for m in ('torch', 'cv2', 'open3d', 'tensorflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr
