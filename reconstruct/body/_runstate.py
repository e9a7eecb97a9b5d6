"""What the body trainers (PIFu, depth net) share: writing and reading a weights file with its
schema, the learning-rate schedule, and a run folder's resumable state (weights, Adam moments,
step, elapsed time, RNG, config).

State layout: ``state.safetensors`` (``model.<name>`` and ``opt.<param id>.exp_avg`` /
``exp_avg_sq`` tensors) + ``state.json`` (step, elapsed_s, train_config, rng), written atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .._deps import require
from .._io import write_bytes_atomic


def read_weights(path: Path, schema: str, what: str) -> tuple[dict, dict]:
    """(metadata, tensors) of a safetensors weights file whose metadata schema is ``schema``;
    FileNotFoundError / one-line ValueError otherwise (``what`` names the kind in messages)."""
    st = require("safetensors")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with st.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({str(e).splitlines()[0]})") from None
    if meta.get("schema") != schema:
        raise ValueError(f"{path} is not a dhstudio {what} checkpoint (schema {meta.get('schema')!r})")
    return meta, tensors


def write_weights(path: Path, module, meta: dict) -> None:
    """``module``'s tensors (on the CPU) with ``meta`` (str values) as one safetensors file (atomic)."""
    st = require("safetensors.torch")
    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    write_bytes_atomic(Path(path), st.save(tensors, metadata=meta))


def cosine_lr(step: int, steps: int) -> float:
    """Learning-rate factor: cosine decay from 1 to 5 % over ``steps``, then 5 %."""
    return 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(step, steps) / steps))


def _comparable(cfg) -> dict:
    """The run config as it reads back from JSON (tuples -> lists), without ``threads``."""
    return {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k != "threads"}


def save_state(out: Path, model, opt, step: int, elapsed: float, cfg, rng: np.random.Generator) -> None:
    st = require("safetensors.torch")
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for pid, s in opt.state_dict()["state"].items():
        tensors[f"opt.{pid}.exp_avg"] = s["exp_avg"].contiguous()
        tensors[f"opt.{pid}.exp_avg_sq"] = s["exp_avg_sq"].contiguous()
    write_bytes_atomic(out / "state.safetensors", st.save(tensors))
    write_bytes_atomic(out / "state.json", json.dumps({"step": step, "elapsed_s": elapsed, "train_config": asdict(cfg),
                                                        "rng": rng.bit_generator.state}).encode())


def load_state(out: Path, model, opt, cfg) -> tuple[int, float, np.random.Generator] | None:
    """Resume ``model`` and ``opt`` from ``out`` (None when it holds no run): (step, elapsed
    seconds, RNG). A run with another configuration (``threads`` aside) is refused."""
    torch = require("torch")
    st = require("safetensors.torch")
    state_json = out / "state.json"
    if not state_json.is_file():
        return None
    s = json.loads(state_json.read_text())
    if {k: v for k, v in s.get("train_config", {}).items() if k != "threads"} != _comparable(cfg):
        raise ValueError(f"{out} holds a run with another configuration; use a new folder")
    tensors = st.load_file(str(out / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    osd = opt.state_dict()
    for pid in range(len(osd["param_groups"][0]["params"])):
        if f"opt.{pid}.exp_avg" in tensors:
            osd["state"][pid] = {"step": torch.tensor(float(s["step"])), "exp_avg": tensors[f"opt.{pid}.exp_avg"],
                                 "exp_avg_sq": tensors[f"opt.{pid}.exp_avg_sq"]}
    opt.load_state_dict(osd)
    rng = np.random.default_rng()
    rng.bit_generator.state = s["rng"]
    return int(s["step"]), float(s["elapsed_s"]), rng
