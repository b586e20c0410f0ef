"""Reading what the user gives without surprises: only regular files are opened for reading.

Guarantee: `open_regular` never blocks and never reads from anything but a regular file
(after following symlinks): a FIFO, socket or device is refused from the status of a
non-blocking open, a folder with IsADirectoryError, each in one line.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import AcnzipError

__all__ = ["NotRegularFileError", "open_regular", "kind_of"]


class NotRegularFileError(AcnzipError, OSError):
    """A FIFO, socket or device where a file was expected."""


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words."""
    for test, word in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return word
    return "not a regular file"


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for binary reading if it is a regular file; IsADirectoryError for a
    folder, NotRegularFileError for anything else, OSError as open() raises it otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)     # a FIFO must not wait for a writer
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{path} is {kind_of(mode)}, not a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
