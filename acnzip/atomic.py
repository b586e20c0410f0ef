"""Atomic outputs: write to a temporary sibling, then rename, so nothing partial is ever left."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["OutputExistsError", "atomic_write_bytes", "atomic_directory", "check_output"]


class OutputExistsError(FileExistsError):
    """The output exists and overwriting was not asked for."""


def check_output(path: Path, force: bool) -> None:
    """Refuse an existing output unless `force` (checked before any work is done)."""
    if Path(path).exists() and not force:
        raise OutputExistsError(f"{path} already exists (use -f to overwrite)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())           # mkstemp makes 0600; outputs are ordinary
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: Path, force: bool = False):
    """Yield a temporary directory that becomes `path` only if the block succeeds.

    An existing `path` is replaced only with `force`, and only after the new one is complete.
    """
    path = Path(path)
    check_output(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())           # mkdtemp makes 0700
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
