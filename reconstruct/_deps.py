"""Heavy optional dependencies, imported on first use behind one clear error.

``require("open3d")`` returns the module or raises :class:`MissingExtra` naming the extra to
install. open3d's CPU wheel links libusb-1.0, which many machines lack; the ``libusb-package``
wheel ships it and we load it before importing open3d.
"""

from __future__ import annotations

import ctypes
import importlib

EXTRA_OF = {
    "open3d": "body",
    "torch": "body",
    "trimesh": "body",
    "mcubes": "body",
    "safetensors": "body",
    "tqdm": "body",
    "pyarrow": "batch",
    "ray": "batch",
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra."""


_libusb_loaded = False


def _preload_libusb() -> None:
    global _libusb_loaded
    if _libusb_loaded:
        return
    try:
        import libusb_package

        path = libusb_package.get_library_path()
        if path:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except (ImportError, OSError):
        pass  # a system libusb may still be there; open3d's own error says what is missing
    _libusb_loaded = True


def require(name: str):
    """Import ``name`` or raise MissingExtra with the pip command that installs it."""
    if name == "open3d":
        _preload_libusb()
    try:
        return importlib.import_module(name)
    except ImportError as e:
        extra = EXTRA_OF.get(name.split(".")[0], "body")
        raise MissingExtra(f"{name} is not available ({e}); install the [{extra}] extra: "
                           f"pip install 'dhstudio[{extra}]'") from None
