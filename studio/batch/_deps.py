"""The batch extra's dependencies, imported on first use behind one clear error.

``pyarrow`` writes the results (both engines); ``ray`` (Ray Data) runs ``--engine ray``. Both come
with ``pip install 'dhstudio[batch]'``. A missing one is an ``InputError`` (the CLI prints one
line); the original ImportError is named in it.
"""

from __future__ import annotations

import importlib

from provenance.errors import InputError

INSTALL_HINT = "pip install 'dhstudio[batch]' (make install does)"


def require(name: str, what: str):
    """Import ``name`` or raise InputError(code="batch.missing_extra") naming the batch extra."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise InputError(f"{what} needs {name.split('.')[0]} ({e}); install the batch extra: {INSTALL_HINT}",
                         code="batch.missing_extra") from None
