"""Outputs that never lose what the user owns: atomic files, and folders filled without
touching anything acnzip does not write.

Guarantees:
* `atomic_write_bytes`: the file is either the old one or the complete new one (temporary
  sibling + fsync + os.replace); the temporary file is removed on any error, Ctrl-C or SIGTERM
  (`terminate_cleanly`).
* `write_folder`: every output is first written completely into a temporary folder; nothing
  existing is changed before that. A new folder then appears by one rename. Into an existing
  folder (allowed only with force, or when it is empty) each output file is moved into place
  by os.replace: only files of the same paths are replaced, nothing else in the folder is
  ever removed or changed.
* Only regular files (or symlinks, replaced by a file in their place) are ever replaced: a
  device, pipe or socket where an output goes is refused, even with force.
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .errors import AcnzipError

__all__ = ["OutputExistsError", "atomic_write_bytes", "atomic_directory", "check_output",
           "refuse_non_file", "write_folder", "terminate_cleanly"]


class OutputExistsError(AcnzipError, FileExistsError):
    """The output exists and replacing it was not asked for."""


def _not_a_file(path: Path) -> str | None:
    """What is at `path` if it is something acnzip never replaces (a device, a pipe, a socket;
    a folder is the callers' own case), else None (nothing there, a regular file, a symlink:
    os.replace puts a new file in the link's place and never writes through it)."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
        return None
    return ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a pipe (FIFO)" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def refuse_non_file(path: Path) -> None:
    """OutputExistsError if a device, pipe or socket is where a file is to be written."""
    what = _not_a_file(path)
    if what is not None:
        raise OutputExistsError(f"{path} is {what}, not a file: acnzip writes regular files "
                                "only and never replaces anything else, even with -f")


def check_output(path: Path, force: bool) -> None:
    """Refuse an existing output file (or symlink) unless `force`, and an output whose folder
    does not exist (checked before any work is done); a folder, device, pipe or socket where a
    file is to be written is always refused."""
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder (give a file name)")
    refuse_non_file(path)
    if os.path.lexists(path) and not force:          # a dangling symlink is something too
        raise OutputExistsError(f"{path} already exists (use -f to overwrite)")
    if not path.absolute().parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder for {path.name}")


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
        refuse_non_file(path)                    # again: it may have appeared meanwhile
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup (temporary files) runs."""


@contextlib.contextmanager
def terminate_cleanly():
    """Within the block, SIGTERM raises Terminated instead of killing the process at once (in
    the main thread; elsewhere it does nothing)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:                                # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise Terminated("terminated")


def _is_empty_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def check_folder_output(path: Path, force: bool, relpaths: Iterable[str] = (),
                        folders: Iterable[str] = ()) -> None:
    """Refuse an output folder that cannot take the outputs (before any work): a file in its
    place; an existing non-empty folder without `force`; with `force`, an output path (a file
    of `relpaths`, a folder of `folders`) whose place (or a parent's) is taken by something of
    the other kind (a folder where a file goes), or by a symbolic link where a folder goes
    (nothing is ever written through one).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a folder")
    if path.is_symlink() and not path.exists():
        raise OutputExistsError(f"{path} is a symbolic link to nothing")
    if not path.is_dir() or _is_empty_dir(path):
        return
    if not force:
        raise OutputExistsError(f"{path} exists and is not empty (use -f to write into it: "
                                "files of the same names are replaced, nothing else is touched)")
    for rel in relpaths:
        target = path / rel
        if target.is_dir() and not target.is_symlink():
            raise OutputExistsError(f"{target} is a folder, the archive restores a file there")
        refuse_non_file(target)
    found: set[str] = set()                 # folders found in place (their checks done)
    # each parent of a file, and each folder with its parents ("f/": f is its own last
    # parent), from the top, while it exists: a folder, never a file or a link
    for rel in [*relpaths, *(f"{f}/" for f in folders)]:
        end = rel.find("/")
        while end > 0:
            parent = rel[:end]
            if parent not in found:
                p = path / parent
                try:
                    mode = os.lstat(p).st_mode
                except FileNotFoundError:
                    break                   # nothing deeper exists either
                if stat.S_ISLNK(mode):      # writing through it would land outside the folder
                    raise OutputExistsError(f"{p} is a symbolic link, the archive restores a "
                                            "folder there")
                if not stat.S_ISDIR(mode):
                    raise OutputExistsError(f"{p} is a file, the archive restores a folder "
                                            "there")
                found.add(parent)
            end = rel.find("/", end + 1)


def write_folder(path: Path, files: Iterable[tuple[str, Callable[[Path], None]]],
                 force: bool = False, folders: Iterable[str] = ()) -> list[str]:
    """Write each (relative path, writer) under the folder `path`; writer(p) creates file p;
    create each folder of `folders` (relative paths; an existing one is kept as it is).

    All files are written into a temporary folder first; then the whole folder is renamed into
    place (when `path` does not exist) or each file is moved in with os.replace (an existing
    folder: empty, or any with `force`; see check_folder_output). Returns the relative paths
    of the files.
    """
    path = Path(path)
    files, folders = list(files), list(folders)
    rels = [rel for rel, _ in files]
    check_folder_output(path, force, rels, folders)
    exists = path.is_dir()          # then empty or force: the temporary folder goes inside
    parent = path if exists else path.absolute().parent
    with _new_folders(parent):
        return _write_into(path, parent, exists, files, rels, folders)


def _write_into(path: Path, parent: Path, exists: bool, files, rels: list[str],
                folders: list[str]) -> list[str]:
    stem = ".acnzip" if exists else f".{path.absolute().name}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{stem}.", suffix=".tmp", dir=parent))
    try:
        if not exists:                  # the whole tree in tmp, then one rename
            for rel, writer in files:
                _make_folders(tmp, rel.rpartition("/")[0])
                writer(tmp / rel)
                os.chmod(tmp / rel, 0o666 & ~_umask())
            for rel in folders:
                _make_folders(tmp, rel)
            for d in _walk_folders(tmp):
                os.chmod(d, 0o777 & ~_umask())         # mkdtemp makes 0700
            os.replace(tmp, path)
            return rels
        staged = []                     # an existing folder: the files side by side in tmp,
        for i, (rel, writer) in enumerate(files):     # then moved in one by one
            staged.append(tmp / str(i))
            writer(staged[-1])
            os.chmod(staged[-1], 0o666 & ~_umask())
        check_folder_output(path, True, rels, folders)  # again: it may have changed meanwhile
        created: list[Path] = []        # every folder first: one that cannot be made fails
        try:                            # the write before any file is replaced
            for rel in [*(r.rpartition("/")[0] for r in rels), *folders]:
                _make_folders(path, rel, created)
        except BaseException:
            for d in reversed(created):
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        for rel, src in zip(rels, staged):
            os.replace(src, path / rel)
        return rels
    finally:
        _remove_tree(tmp)


def _make_folders(root: Path, rel: str, created: list[Path] | None = None) -> None:
    """Create the folder root/rel ('' is root itself) and its missing parents, without
    recursion (any depth), appending those it creates to `created`."""
    missing = []
    while rel and not (root / rel).is_dir():
        missing.append(rel)
        rel = rel.rpartition("/")[0]
    for rel in reversed(missing):
        os.mkdir(root / rel)
        if created is not None:
            created.append(root / rel)


def _walk_folders(top: Path) -> Iterable[str]:
    """`top` and every folder under it (symbolic links not followed), without recursion."""
    stack = [str(top)]
    while stack:
        d = stack.pop()
        yield d
        with os.scandir(d) as entries:
            stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))


def _remove_tree(top: Path) -> None:
    """shutil.rmtree(top, ignore_errors=True) without recursion, so a tree of any depth goes."""
    try:
        folders = list(_walk_folders(top))
    except OSError:
        folders = [str(top)] if os.path.isdir(top) else []
    for d in reversed(folders):                 # the deepest first
        with contextlib.suppress(OSError), os.scandir(d) as entries:
            for e in entries:
                if not e.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.unlink(e.path)
        with contextlib.suppress(OSError):
            os.rmdir(d)


@contextlib.contextmanager
def atomic_directory(path: Path, force: bool = False):
    """Yield a temporary directory whose files become the folder `path` (write_folder's rules:
    a new folder appears whole; an existing one only gains or replaces those files)."""
    path = Path(path)
    check_folder_output(path, force)
    force = force or path.is_dir()          # empty (checked): the staging folder will be in it
    where = path if path.is_dir() else path.absolute().parent
    with _new_folders(where):
        staging = Path(tempfile.mkdtemp(prefix=".acnzip-staging.", suffix=".tmp", dir=where))
        try:
            yield staging
            found = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*")
                           if p.is_file())
            write_folder(path, [(rel, _mover(staging / rel)) for rel in found], force)
        finally:
            _remove_tree(staging)


@contextlib.contextmanager
def _new_folders(folder: Path):
    """Create `folder` and its missing parents; if the block then fails, remove those that
    are still empty (the ones created here only), so a failed write leaves nothing behind."""
    missing = [d for d in [folder, *folder.parents] if not d.exists()]     # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for d in missing:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _mover(src: Path) -> Callable[[Path], None]:
    return lambda dst: os.replace(src, dst)
