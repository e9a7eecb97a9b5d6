"""The batch extra's dependencies, imported on first use behind one clear error.

``pyarrow`` writes the results (both engines); ``ray`` (Ray Data) runs ``--engine ray``. Both come
with ``pip install 'dhstudio[batch]'``. A missing one is an ``InputError`` (the CLI prints one
line); the original ImportError is named in it.
"""

from __future__ import annotations

from provenance.errors import InputError
from reconstruct._deps import MissingExtra
from reconstruct._deps import require as _require

INSTALL_HINT = "pip install 'dhstudio[batch]' (make install does)"


def require(name: str, what: str):
    """The house's ``reconstruct._deps.require``, its MissingExtra turned into the CLI's
    InputError(code="batch.missing_extra") naming the batch extra."""
    try:
        return _require(name)
    except MissingExtra as e:
        cause = e.__context__ or e  # the ImportError itself
        raise InputError(f"{what} needs {name.split('.')[0]} ({cause}); install the batch extra: {INSTALL_HINT}",
                         code="batch.missing_extra") from None
