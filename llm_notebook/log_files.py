"""The log file is private: it holds every prompt and answer of every notebook.

`prepare(path)` runs before SQLite opens the log. A new log's folder is created 0700 and the
database file 0600 (created here, empty, so SQLite never creates it with the umask's mode; its
-wal and -shm files take the database's mode). An existing log that other users can read or
write gets one warning per process that says how to make it private; it is not changed behind
the user's back (a shared log may be shared on purpose).
"""

from __future__ import annotations

import os
import threading
import warnings

_SIDE_FILES = ("", "-wal", "-shm")
_warned: set[str] = set()
_lock = threading.Lock()


class LogPermissionWarning(UserWarning):
    """The log can be read (or written) by users other than its owner."""


def prepare(path: str) -> None:
    """Make sure the log's folder exists and a new log file is created private."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        _chmod(folder, 0o700)  # makedirs' mode passes through the umask
    if os.path.isdir(path):
        raise IsADirectoryError(21, "it is a folder", path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        warn_if_shared(path)
        return
    os.close(fd)
    _chmod(path, 0o600)


def shared_modes(path: str) -> dict[str, int]:
    """The log's files (database, -wal, -shm) that users other than the owner can access."""
    if os.name == "nt":  # no POSIX modes to speak of
        return {}
    found = {}
    for suffix in _SIDE_FILES:
        try:
            mode = os.stat(path + suffix).st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            found[path + suffix] = mode
    return found


def warn_if_shared(path: str) -> None:
    loose = shared_modes(path)
    if not loose:
        return
    with _lock:
        if path in _warned:
            return
        _warned.add(path)
    modes = ", ".join(f"{os.path.basename(p)} {m:o}" for p, m in loose.items())
    warnings.warn(f"the llm-notebook log {path} can be read by other users ({modes}); make it "
                  f"private with: chmod 600 {path}*", LogPermissionWarning, stacklevel=4)


def _chmod(path: str, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError:  # not ours to change (e.g. a mounted folder): the warning covers it
        pass
