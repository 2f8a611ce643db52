"""Writing results safely: whole files or nothing, and file-system errors that name the path.

Every file a run or a suite publishes (result.json, results.csv, suite.json, meta.json, predictions.csv,
checkpoints) is written to a temporary file beside its target and renamed over it. A reader sees the previous file
or the new one, whole; a full disk or a refused write leaves the previous file as it was and raises ``OutputError``.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["FILESYSTEM_ERRNOS", "OutputError", "check_writable_dir", "write_atomic", "write_json", "write_text"]

# errors of the file system rather than of the program: reported in one line that names the path
FILESYSTEM_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
}  # fmt: skip


class OutputError(OSError):
    """A result could not be written; the message names the file and the previous version is intact."""


def write_atomic(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool = False) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb" if binary else "w", **({} if binary else {"newline": ""})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as err:  # a signal too: no half-written temporary file is left behind
        temporary.unlink(missing_ok=True)
        if not isinstance(err, OSError) or isinstance(err, OutputError):
            raise
        reason = err.strerror or str(err)
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise OutputError(err.errno, f"cannot write {path}: {reason} ({kept})") from err


def write_text(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text))


def write_json(path: str | os.PathLike, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def check_writable_dir(directory: str | os.PathLike, *, key: str) -> None:
    """Fail before any training unless ``directory`` can be written: it, or its nearest existing parent, must be a
    folder that takes a file. Nothing is left behind (a rejected command leaves no run directory).

    ``key`` names the setting the directory comes from (``--runs_dir``, ``ablation.output_dir``); an unusable
    directory is a ``ValueError`` of that setting.
    """
    directory = Path(directory).absolute()
    existing = next(path for path in (directory, *directory.parents) if path.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is not a folder")
        probe = existing / f".write_probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"{key}: cannot write to {directory}: {reason}") from err
