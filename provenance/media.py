"""The one media module: what a file is (sniffed from its bytes), its hash, a single read of it,
and the one atomic writer.

Every part of dhstudio that needs to know a file's type asks :func:`sniff_bytes` /
:func:`sniff_media_type`; the extension is never trusted alone (it only names OBJ text, which has no
magic). Every write of a finished output goes through :func:`atomic_target` /
:func:`write_atomic` (temp file in the destination folder, fsync, rename): a failed or killed write
leaves no half file. ``verify`` reads the file once with :func:`read_snapshot` and works on those
bytes, so a file swapped on disk during verification cannot mix two files into one verdict.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import InputError, OutputError

__all__ = [
    "IMAGE_TYPES", "VIDEO_TYPES", "AUDIO_TYPES", "MESH_TYPES", "SIGNABLE_TYPES", "EXTENSIONS",
    "SNIFF_BYTES",
    "sniff_bytes", "sniff_media_type", "sha256_bytes", "sha256_file", "check_input_path",
    "open_regular", "read_regular", "Snapshot", "read_snapshot", "max_file_bytes",
    "atomic_target", "write_atomic", "check_output_path", "wm_id_hex",
]

# Pillow decodes every one of these (HEIC only with the pillow-heif plugin, which we do not ship)
IMAGE_TYPES = frozenset({
    "image/jpeg", "image/png", "image/webp", "image/tiff", "image/gif", "image/bmp",
    "image/x-portable-anymap", "image/x-icon", "image/qoi", "image/jp2", "image/avif", "image/heic",
})
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/3gpp", "video/webm", "video/x-matroska",
                         "video/avi"})
AUDIO_TYPES = frozenset({"audio/wav", "audio/mp4", "audio/mpeg", "audio/flac", "audio/ogg"})
MESH_TYPES = frozenset({"model/gltf-binary", "model/ply", "model/obj"})
# what `sign` accepts, and the extensions its output may carry (the output keeps the input's format)
EXTENSIONS = {
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
    "image/webp": (".webp",),
    "video/mp4": (".mp4", ".m4v"),
    "audio/wav": (".wav",),
    "model/gltf-binary": (".glb",),
}
SIGNABLE_TYPES = frozenset(EXTENSIONS)

SNIFF_BYTES = 4096  # enough for an ISO-BMFF ftyp box with its compatible brands
_MAX_SMALL_FILE = 16 << 20  # trust anchors, sidecars, passphrase files

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}
_AUDIO_MP4_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_3GP_PREFIXES = (b"3gp", b"3g2")


def wm_id_hex(wm_id: int | None) -> str | None:
    """The one printed form of a 48-bit watermark id: 12 lowercase hex digits."""
    return None if wm_id is None else f"{int(wm_id):012x}"


# --------------------------------------------------------------------------- sniffing


def _ftyp_type(head: bytes) -> str | None:
    """ISO base media file format: decide by the major brand and the compatible brands."""
    size = int.from_bytes(head[0:4], "big")
    if size < 16 or size > len(head):
        size = min(len(head), 256) if size == 1 or size > len(head) else 16
    major = head[8:12]
    compat = {head[i:i + 4] for i in range(16, size - 3, 4)}
    brands = {major} | compat
    if major in _AVIF_BRANDS or (major in (b"mif1", b"msf1") and brands & _AVIF_BRANDS):
        return "image/avif"
    if major in _HEIC_BRANDS or major in (b"mif1", b"msf1"):
        return "image/heic"
    if major in _AUDIO_MP4_BRANDS:
        return "audio/mp4"
    if major == b"qt  ":
        return "video/quicktime"
    if major.startswith(_3GP_PREFIXES):
        return "video/3gpp"
    return "video/mp4"


def _looks_like_obj(head: bytes) -> bool:
    """Wavefront OBJ is plain text starting with comments or v/vt/vn/o/g/mtllib lines."""
    try:
        first = head[:256].decode("ascii").lstrip().split(None, 1)[0]
    except (UnicodeDecodeError, IndexError):
        return False
    return first.startswith("#") or first in ("v", "vt", "vn", "o", "g", "mtllib", "s", "usemtl")


def sniff_bytes(head: bytes, name: str | os.PathLike | None = None) -> str | None:
    """Media type from a file's first bytes (``SNIFF_BYTES`` of them are enough).

    ``name`` is only used for Wavefront OBJ, which is plain text without a magic number.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/avi"}.get(head[8:12])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"
    if head[:2] == b"BM" and len(head) >= 26 and int.from_bytes(head[14:18], "little") in (12, 16, 40, 52, 56,
                                                                                            64, 108, 124):
        return "image/bmp"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n#":
        return "image/x-portable-anymap"
    if head[:4] == b"qoif":
        return "image/qoi"
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and 0 < int.from_bytes(head[4:6], "little") <= 256:
        return "image/x-icon"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "image/jp2"
    if head[:4] == b"glTF":
        return "model/gltf-binary"
    if head.startswith((b"ply\n", b"ply\r\n")):
        return "model/ply"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _ftyp_type(head)
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:4] == b"OggS":
        return "audio/ogg"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "audio/mpeg"
    if head[:4] == b"%PDF":
        return "application/pdf"
    if name is not None and str(name).lower().endswith(".obj") and _looks_like_obj(head):
        return "model/obj"
    return None


def sniff_media_type(path: str | os.PathLike) -> str | None:
    """Media type of the file at ``path`` from its first bytes (None when unknown or empty)."""
    with open_regular(path) as f:
        return sniff_bytes(f.read(SNIFF_BYTES), name=path)


# --------------------------------------------------------------------------- hashing


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------- reading


def check_input_path(path: str | os.PathLike) -> None:
    """Raise InputError when ``path`` cannot be examined at all (missing, a folder, a FIFO...)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", code="input.not_found") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{path}: too many levels of symbolic links", code="input.symlink_loop") from None
        raise InputError(f"{path}: cannot access ({e.strerror})", code="input.unreadable") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory, not a file", code="input.is_directory")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file", code="input.not_regular")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied", code="input.unreadable")


def open_regular(path: str | os.PathLike, what: str | None = None):
    """Open ``path`` for reading, refusing anything but a regular file *before* blocking on it.

    A FIFO or a device opened plainly would hang or stream forever; here the open is non-blocking
    and the type is checked on the open descriptor (no check-then-open race). Returns a binary file.
    """
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    check_input_path(path)  # clear messages for the common cases
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(f"{label}: cannot open ({e.strerror})", code="input.unreadable") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{label}: not a regular file", code="input.not_regular")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, *, what: str | None = None, max_bytes: int = _MAX_SMALL_FILE) -> bytes:
    """All bytes of a small regular file (trust anchors, sidecars), at most ``max_bytes``."""
    with open_regular(path, what) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        label = f"{what} {path}" if what else str(path)
        raise InputError(f"{label}: larger than {max_bytes >> 20} MB", code="limit.file_bytes")
    return data


def max_file_bytes() -> int:
    """The largest file ``verify`` reads: ``Limits.max_file_bytes`` ($DHSTUDIO_MAX_FILE_BYTES)."""
    from .limits import current_limits

    return current_limits().max_file_bytes


@dataclass(frozen=True)
class Snapshot:
    """The bytes of a file as read once, with what is known of them."""

    path: Path
    data: bytes
    sha256: str
    media_type: str | None

    @property
    def size(self) -> int:
        return len(self.data)


def read_snapshot(path: str | os.PathLike, *, max_bytes: int | None = None) -> Snapshot:
    """Read ``path`` once (one open, one descriptor) into memory and sniff and hash those bytes.

    Raises InputError (one line) for anything that is not a readable regular file, and
    ``limit.file_bytes`` for files larger than ``max_bytes`` (default ``Limits.max_file_bytes``).
    """
    path = Path(path)
    limit = max_file_bytes() if max_bytes is None else int(max_bytes)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise InputError(f"{path}: {size / 2**20:.0f} MB is over the {limit / 2**20:.0f} MB limit "
                             "(DHSTUDIO_MAX_FILE_BYTES)", code="limit.file_bytes")
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while we read it
        raise InputError(f"{path}: over the {limit / 2**20:.0f} MB limit (DHSTUDIO_MAX_FILE_BYTES)",
                         code="limit.file_bytes")
    return Snapshot(path, data, sha256_bytes(data), sniff_bytes(data[:SNIFF_BYTES], name=path) if data else None)


# --------------------------------------------------------------------------- writing


def check_output_path(dst: str | os.PathLike, src: str | os.PathLike | None = None) -> Path:
    """Refuse outputs that would destroy the input or cannot be written; return ``dst`` as a Path."""
    dst = Path(dst)
    try:
        st = os.stat(dst)
    except FileNotFoundError:
        st = None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutputError(f"output {dst}: too many levels of symbolic links", code="output.symlink_loop") from None
        if e.errno == errno.ENOTDIR:
            raise OutputError(f"output {dst}: a part of the path is not a directory", code="output.no_directory") from None
        raise OutputError(f"output {dst}: {e.strerror}", code="output.unwritable") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"output {dst} is a directory", code="output.is_directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputError(f"output {dst} exists and is not a regular file", code="output.not_regular")
    if src is not None:
        try:
            same = st is not None and os.path.samefile(src, dst)
        except OSError:
            same = False
        try:
            same = same or Path(src).resolve() == dst.resolve()
        except (OSError, RuntimeError):
            pass
        if same:
            raise OutputError(f"output {dst} is the input file; choose another output path",
                              code="output.same_as_input")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist", code="output.no_directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {parent} is not writable", code="output.unwritable")
    return dst


@contextmanager
def atomic_target(dst: str | os.PathLike, *, mode: int = 0o644, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``dst``'s folder (same suffix); on success it replaces ``dst``.

    On any exception (KeyboardInterrupt and termination included) the temporary file is removed and
    ``dst`` is untouched. ``mode`` is applied before the rename (0600 for keys).
    """
    dst = Path(dst)
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {dst}: folder {parent} does not exist", code="output.no_directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name[:100]}.", suffix=".part" + dst.suffix[:16], dir=parent)
    except OSError as e:
        raise OutputError(f"cannot write in {parent}: {e.strerror}", code="output.unwritable") from None
    tmp_p = Path(tmp)
    try:
        os.fchmod(fd, mode)
        os.close(fd)
        yield tmp_p
        if fsync:
            with open(tmp_p, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp_p, mode)  # the writer may have re-created the file
        os.replace(tmp_p, dst)
    except OSError as e:
        _unlink(tmp_p)
        raise OutputError(f"cannot write {dst}: {e.strerror or e}", code="output.unwritable") from None
    except BaseException:
        _unlink(tmp_p)
        raise


def write_atomic(dst: str | os.PathLike, data: bytes | str, *, mode: int = 0o644, fsync: bool = True) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``dst`` atomically."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_target(dst, mode=mode, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def private_workdir(folder: str | os.PathLike, prefix: str) -> Path:
    """A new private folder ``<prefix><pid>-<random>`` in ``folder``, after removing the folders of
    that prefix whose process is gone (a run killed with SIGKILL cannot clean up after itself)."""
    remove_stale_workdirs(folder, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=folder))


def remove_stale_workdirs(folder: str | os.PathLike, prefix: str) -> None:
    """Remove the ``<prefix><pid>-*`` folders in ``folder`` whose process no longer runs."""
    import shutil

    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in entries:
        if not e.name.startswith(prefix) or not e.is_dir(follow_symlinks=False):
            continue
        pid_s = e.name[len(prefix):].split("-", 1)[0]
        if not pid_s.isdigit() or int(pid_s) == os.getpid():
            continue
        try:
            os.kill(int(pid_s), 0)
            continue  # still running
        except ProcessLookupError:
            shutil.rmtree(e.path, ignore_errors=True)
        except OSError:
            continue
