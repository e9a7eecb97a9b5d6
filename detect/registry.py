"""Face-forgery detectors by name: ``create_detector("meso4")`` is the one way to build one.

A family module in ``detect/models/`` registers each model class with :func:`register_detector`;
:func:`create_detector` builds it from its config dataclass (unknown names and bad config keys are
a ``ValueError`` naming the valid ones); :func:`load_detector` reads what ``Detector.save`` wrote.

On-disk format: one safetensors file (``*.safetensors``): the state dict (parameters and
buffers) as tensors, and in its header metadata (string values, readable with any safetensors
tool) the JSON config:

- ``schema``: ``dhstudio.detector/1``;
- ``name``: the registry name;
- ``config``: JSON object of the config dataclass's fields;
- ``metadata``: JSON object, free-form (training run, data, metrics, version...);
- ``n_params``, ``saved_with`` (JSON: the torch version).

Plain data only, never a pickle: loading a file runs no code from it. One file, written
atomically, so weights and config cannot come apart.

Importing this module is light (no torch): torch and the model code load on the first
:func:`list_detectors` / :func:`create_detector` / :func:`load_detector` call. A missing torch or
safetensors raises :class:`MissingDependency` naming what to install; nothing falls back.

Example::

    >>> from detect.registry import create_detector, list_detectors, load_detector
    >>> list_detectors()  # doctest: +SKIP
    ['capsule', 'efficientnet_lite', 'meso4', 'mesoinception4', 'multitask', 'xray']
    >>> det = create_detector("meso4", input_size=128)  # doctest: +SKIP
    >>> det.save("runs/meso4.safetensors", metadata={"data": "ff++ c23"})  # doctest: +SKIP
    >>> det2 = load_detector("runs/meso4.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import json
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "SCHEMA",
    "MissingDependency",
    "register_detector",
    "create_detector",
    "list_detectors",
    "get_detector_class",
    "load_detector",
    "save_detector",
    "read_detector_header",
]

SCHEMA = "dhstudio.detector/1"
"""Schema of a saved detector (its safetensors header)."""
READABLE_SCHEMAS = (SCHEMA,)

# the pyproject extra that installs torch + safetensors today
_EXTRA = "body"

_REGISTRY: dict[str, type] = {}
_builtin_loaded = False


class MissingDependency(ImportError):
    """An optional dependency a detector needs is not installed; the message says what to install."""


def _require(module: str, what: str):
    """Import ``module`` or raise :class:`MissingDependency` (the original ImportError is kept as
    ``__cause__``)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"{what} needs {module.split('.')[0]}, which is not installed ({e}); "
            f"install the [{_EXTRA}] extra: pip install 'dhstudio[{_EXTRA}]'") from e


def _load_builtin() -> None:
    """Import ``detect.models`` once, which registers the built-in families."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    _require("torch", "the face-forgery detectors")
    importlib.import_module(f"{__package__}.models" if __package__ else "detect.models")
    _builtin_loaded = True


def register_detector(name: str) -> Callable[[type], type]:
    """Class decorator: register a :class:`~detect.models.base.Detector` subclass as ``name``.

    The class must have a ``config_class`` (a ``DetectorConfig`` dataclass). Sets ``cls.name``.
    Registering another class under a taken name is a ValueError.
    """
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"detector name must be lower-case letters, digits and '_': got {name!r}")

    def deco(cls: type) -> type:
        config_class = getattr(cls, "config_class", None)
        if config_class is None or not hasattr(config_class, "__dataclass_fields__"):
            raise TypeError(f"{cls.__qualname__} has no config_class dataclass; cannot register it as {name!r}")
        old = _REGISTRY.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"detector name {name!r} is already taken by {old.__module__}.{old.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_detectors(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered detectors, optionally filtered by a glob ``pattern``
    (``"meso*"``)."""
    _load_builtin()
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def _unknown(name: str) -> ValueError:
    names = sorted(_REGISTRY)
    close = difflib.get_close_matches(str(name), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown detector {name!r}{hint}; valid names: {', '.join(names)}")


def get_detector_class(name: str) -> type:
    """The class registered as ``name`` (its ``config_class`` documents every option)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[name]


def create_detector(name: str, **cfg: Any):
    """Build the detector registered as ``name`` with its config fields set from ``cfg``
    (every other field keeps its default). Weights are freshly initialised (seed with
    ``torch.manual_seed`` for a reproducible start); the module is in training mode.

    Raises ValueError for an unknown name (listing the valid ones), an unknown config key
    (listing the valid keys) or a bad value; :class:`MissingDependency` without torch.
    """
    cls = get_detector_class(name)
    config = cls.config_class.from_dict(cfg, what=name)
    return cls(config)


def save_detector(detector, path: str | Path, metadata: dict | None = None) -> Path:
    """Write ``detector`` to the safetensors file ``path`` (atomically; the folder must exist):
    weights + the JSON config in the header. ``metadata`` (JSON data: training run, data,
    metrics, version...) is merged over ``detector.metadata``. Returns the path."""
    st = _require("safetensors.torch", "saving a detector")
    torch = _require("torch", "saving a detector")
    from provenance.media import write_atomic

    name = getattr(type(detector), "name", "")
    if _REGISTRY.get(name) is not type(detector):
        raise ValueError(f"{type(detector).__qualname__} is not a registered detector; register it with "
                         f"@register_detector before saving")
    meta = {**(getattr(detector, "metadata", None) or {}), **(metadata or {})}
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"detector metadata must be plain JSON data ({e})") from None
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; a detector is saved as one file (e.g. {path / 'model.safetensors'})")
    header = {
        "schema": SCHEMA,
        "name": name,
        "config": json.dumps(detector.config.to_dict(), sort_keys=True),
        "metadata": meta_json,
        "n_params": str(int(detector.n_params)),
        "saved_with": json.dumps({"torch": torch.__version__}),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in detector.state_dict().items()}
    write_atomic(path, st.save(tensors, metadata=header))
    return path


def read_detector_header(path: str | Path) -> dict:
    """The JSON config of a saved detector without loading its weights or torch:
    ``{"schema", "name", "config": dict, "metadata": dict, "n_params": int, "saved_with": dict}``.
    FileNotFoundError / one-line ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved detector at {path}")
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= n <= 100_000_000:
            raise ValueError(f"{path} is not a safetensors file")
        raw = f.read(n)
    try:
        meta = json.loads(raw).get("__metadata__") or {}
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise ValueError(f"{path} is not a safetensors file (unreadable header)") from None
    if meta.get("schema") not in READABLE_SCHEMAS:
        raise ValueError(f"{path} is not a dhstudio detector (schema {meta.get('schema')!r}; "
                         f"readable: {', '.join(READABLE_SCHEMAS)})")
    doc = {"schema": meta["schema"], "name": meta.get("name")}
    for key in ("config", "metadata", "saved_with"):
        try:
            doc[key] = json.loads(meta.get(key, "{}"))
        except ValueError:
            raise ValueError(f"{path}: header field {key!r} is not valid JSON") from None
        if not isinstance(doc[key], dict):
            raise ValueError(f"{path}: header field {key!r} must be a JSON object")
    try:
        doc["n_params"] = int(meta.get("n_params", "-1"))
    except ValueError:
        raise ValueError(f"{path}: header field 'n_params' is not an integer") from None
    return doc


def load_detector(path: str | Path, *, device: str | None = None):
    """Read a detector saved by ``Detector.save`` / :func:`save_detector` (a safetensors file).
    Returns it in eval mode, on ``device`` (default CPU), with ``.metadata`` as saved.

    Raises FileNotFoundError when there is no file, ValueError (one line) for a file that is
    not a dhstudio detector, an unknown schema or detector name, bad config keys or values, or
    tensors that do not fit the model; :class:`MissingDependency` without torch / safetensors.
    """
    st = _require("safetensors.torch", "loading a detector")
    path = Path(path)
    doc = read_detector_header(path)
    name = doc["name"]
    cls = get_detector_class(name)
    config = cls.config_class.from_dict(doc["config"], what=f"{name} in {path}")
    try:
        tensors = st.load(path.read_bytes())
    except Exception as e:  # safetensors raises its own error types for a broken file
        raise ValueError(f"{path} is not a readable safetensors file "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None

    detector = cls(config)
    own = detector.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit {name} with its config: "
                         f"missing {_few(missing)}, unexpected {_few(unexpected)}")
    bad = [k for k in own if tuple(own[k].shape) != tuple(tensors[k].shape)]
    if bad:
        k = bad[0]
        raise ValueError(f"{path} does not fit {name} with its config: {k} has shape "
                         f"{tuple(tensors[k].shape)}, the model wants {tuple(own[k].shape)}"
                         f"{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}")
    detector.load_state_dict(tensors, strict=True)
    detector.metadata = dict(doc["metadata"])
    if device is not None:
        detector.to(device)
    return detector.eval()


def _few(keys: list[str], n: int = 3) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")
