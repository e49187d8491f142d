"""Suite 13 — safe to share: the log is private.

Under the usual umask 022 (files 0644, folders 0755 by default), a new log's folder is 0700 and
the database, its -wal and its -shm are 0600, however the log is first opened (a Session's
call, the server extension). An existing log that others can read gets one warning, one line,
that says how to fix it; the log keeps working.
"""

from __future__ import annotations

import os
import stat
import warnings

import pytest

from llm_notebook.log import Log
from llm_notebook.log_files import LogPermissionWarning

SUITE = "13 safe to share"


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_log_is_private_under_umask_022(umask_022, tmp_path, nb_session, loopback, record):
    path = tmp_path / "fresh" / "deeper" / "log.db"
    nb_session.config.log_path = str(path)
    nb_session.add_endpoint("loop", loopback.url)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LogPermissionWarning)
        assert nb_session.ask("hello", model="loop/m").status == "ok"
    files = {"log": _mode(path), "-wal": _mode(f"{path}-wal"), "-shm": _mode(f"{path}-shm"),
             "folder": _mode(path.parent)}
    wanted = {"log": 0o600, "-wal": 0o600, "-shm": 0o600, "folder": 0o700}
    for name, mode in files.items():
        record.check(f"{name} {oct(mode)}, wanted {oct(wanted[name])}", mode == wanted[name])
    # A file made by the same process under the same umask, for contrast: 0644.
    (tmp_path / "plain.txt").write_text("x")
    plain = _mode(tmp_path / "plain.txt")
    record.note("umask 022: " + ", ".join(f"{name} {mode:o}" for name, mode in files.items())
                + f" (a plain file {plain:o})")
    assert files == wanted, {k: oct(v) for k, v in files.items()}
    assert plain == 0o644


def test_an_existing_readable_log_gets_one_line_saying_how_to_fix_it(umask_022, tmp_path, record):
    path = tmp_path / "shared" / "log.db"
    Log(str(path)).close()
    os.chmod(path, 0o644)
    before = _mode(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = Log(str(path))
        log.insert_call({"model": "m", "status": "ok"})
        Log(str(path)).close()                      # the same log again: no second warning
    found = [w for w in caught if issubclass(w.category, LogPermissionWarning)]
    message = str(found[0].message) if found else ""
    calls = log.count_calls()
    record.check("one warning, one line, with the chmod", len(found) == 1 and "\n" not in message
                 and f"chmod 600 {path}*" in message and "644" in message)
    record.check("the log still works", calls == 1)
    record.note(f"an existing {before:o} log opened twice: {len(found)} warning(s), "
                f"{len(message.splitlines())} line(s); {calls} call logged after it")
    assert len(found) == 1, [str(w.message) for w in caught]
    assert "\n" not in message and f"chmod 600 {path}*" in message and "644" in message
    assert calls == 1                   # still usable
    log.close()
