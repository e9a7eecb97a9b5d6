"""Triton backend of the hash grid: values and gradients equal to the PyTorch reference.

Two ways to run the same checks (``_triton_parity.parity_checks``):
- on CPU, through Triton's interpreter (``TRITON_INTERPRET=1``) in the nerfstudio environment
  ``.venv-ns`` (it has triton; .venv does not): a subprocess, skipped when .venv-ns is missing;
- on a CUDA device (``gpu`` mark), in this process, where triton and CUDA are present.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
NS_PY = Path(os.environ.get("DHSTUDIO_NS_VENV", REPO / ".venv-ns")) / "bin" / "python"


@pytest.mark.skipif(not NS_PY.exists(), reason=f"no Python with triton ({NS_PY} missing; run `make ns-env`)")
def test_triton_kernels_match_reference_in_the_interpreter():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])\n"
            "from _triton_parity import parity_checks\n"
            "bad = parity_checks('cpu')\n"
            "print('\\n'.join(bad) if bad else 'OK')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(TRITON_INTERPRET="1", OMP_NUM_THREADS="2")
    r = subprocess.run([str(NS_PY), "-c", code, str(REPO), str(Path(__file__).parent)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "OK", r.stdout


@pytest.mark.gpu
def test_triton_kernels_match_reference_on_cuda():
    torch = pytest.importorskip("torch")
    pytest.importorskip("triton", reason="triton is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    sys.path.insert(0, str(Path(__file__).parent))
    from _triton_parity import parity_checks

    assert parity_checks("cuda") == []


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
