"""Typed errors shared by the provenance package.

Every error a user can cause carries a short machine-readable ``code`` and a
one-line human message; the CLI prints ``dhstudio: error: <message>`` and exits
non-zero, the verifier puts ``{"code", "message"}`` into the Verdict.
"""

from __future__ import annotations


class DhsError(Exception):
    """Base class of every user-facing dhstudio error."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class InputError(DhsError):
    """The input file is missing, unreadable, corrupt, hostile or of the wrong type."""

    code = "input.invalid"


class OutputError(DhsError):
    """The output cannot be written (same as input, unwritable directory...)."""

    code = "output.invalid"


class KeyStoreError(DhsError):
    """Signing identity missing, corrupt, expired, mismatched or wrong passphrase."""

    code = "keys.invalid"


class SigningError(DhsError):
    """C2PA signing failed."""

    code = "signing.failed"


class RegistryError(DhsError):
    """The registry database is unreadable or corrupt."""

    code = "registry.invalid"


class WatermarkError(DhsError):
    """Watermark embedding or decoding could not run on this input."""

    code = "watermark.failed"
