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


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text) -> str:
    """``text`` safe to print on a terminal: control characters (C0, DEL, C1, ESC sequences) and
    the bidirectional-override and line-separator code points are escaped (``\\n``, ``\\x1b``,
    ``\\u202e``), so a file name or a certificate field cannot forge lines or colours."""
    s = str(text)
    out = []
    for ch in s:
        o = ord(ch)
        if o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0:
            out.append(_ESCAPES.get(ch, f"\\x{o:02x}"))
        elif 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069 or o in (0x2028, 0x2029, 0x200E, 0x200F, 0x061C):
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)
