"""The files of a batch: PATHS (files and folders, folders walked) -> a sorted list of absolute paths.

Rules, so that a batch over a tree does what a user expects and nothing outside it:

- a PATH named on the command line is taken as given (a symlink named there is followed); a
  folder is walked recursively, its entries in name order;
- in a walked folder: only regular files; hidden names (``.*``) are skipped, and so are FIFOs,
  sockets and devices; a symlink is followed only when its target lies inside the folder named
  on the command line (a link out of the tree is skipped), and a link to a folder is never
  descended (what it points to is walked already);
- an unreadable folder stops the batch before anything runs (one clear error): skipping it
  quietly would leave files out of the results without a word;
- ``exclude`` names paths never taken (the results file, its checkpoint folder, sign's output
  folder), so a batch whose output lies inside its input does not process its own output.

Paths are absolute (``os.path.abspath``: normalised, symlinks not resolved) and unique: they key
the results (with the file's sha256).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from provenance.errors import InputError


@dataclass
class Collected:
    files: list[str] = field(default_factory=list)
    """Absolute paths, in walk order, each once."""
    roots: dict[str, str] = field(default_factory=dict)
    """file -> the folder (named on the command line) it was found in; a named file: its own folder."""
    skipped_links: int = 0
    """Symlinks out of their tree, or to folders."""
    skipped_special: int = 0
    """FIFOs, sockets, devices, and links to them."""
    skipped_hidden: int = 0


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def collect_files(paths, *, exclude=()) -> Collected:
    """Walk ``paths`` (see the module docstring). Raises InputError for a missing PATH, an
    unreadable folder, or when no file is found."""
    out = Collected()
    seen: set[str] = set()
    excluded = {os.path.abspath(os.fspath(p)) for p in exclude}

    def is_excluded(p: str) -> bool:
        return any(_inside(p, x) for x in excluded)

    def take(p: str, root: str) -> None:
        if p not in seen and not is_excluded(p):
            seen.add(p)
            out.files.append(p)
            out.roots[p] = root

    for arg in paths:
        a = os.path.abspath(os.fspath(arg))
        try:
            st = os.stat(a)
        except FileNotFoundError:
            raise InputError(f"{arg}: no such file or directory", code="input.not_found") from None
        except OSError as e:
            raise InputError(f"{arg}: cannot access ({e.strerror})", code="input.unreadable") from None
        if stat.S_ISREG(st.st_mode):
            take(a, os.path.dirname(a))
        elif stat.S_ISDIR(st.st_mode):
            _walk(a, take, is_excluded, out)
        else:
            raise InputError(f"{arg}: not a regular file or a folder", code="input.not_regular")
    if not out.files:
        raise InputError("no files found in " + ", ".join(str(p) for p in paths)
                         + " (hidden files, special files and symlinks out of the folder are skipped)",
                         code="input.no_files")
    return out


def _walk(root: str, take, is_excluded, out: Collected) -> None:
    root_real = os.path.realpath(root)
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise InputError(f"cannot read folder {folder}: {e.strerror}", code="input.unreadable") from None
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                out.skipped_hidden += 1
                continue
            p = os.path.join(folder, e.name)
            if is_excluded(p):
                continue
            try:
                if e.is_symlink():
                    target = os.path.realpath(p)
                    try:
                        tst = os.stat(target)
                    except OSError:
                        out.skipped_links += 1  # dangling
                        continue
                    if not _inside(target, root_real) or stat.S_ISDIR(tst.st_mode):
                        out.skipped_links += 1
                    elif stat.S_ISREG(tst.st_mode):
                        take(p, root)
                    else:
                        out.skipped_special += 1
                elif e.is_dir(follow_symlinks=False):
                    subdirs.append(p)
                elif e.is_file(follow_symlinks=False):
                    take(p, root)
                else:
                    out.skipped_special += 1
            except OSError:
                out.skipped_special += 1
        stack.extend(reversed(subdirs))  # depth first, in name order
