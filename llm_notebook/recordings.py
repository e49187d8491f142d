"""A notebook's recordings: the answers its calls got, in a file that travels with the notebook.

Where: `llm-recordings.jsonl` in the notebook's folder (or `LLMNotebook.recordings`,
`$LLM_NOTEBOOK_RECORDINGS`). One file per folder, not one per notebook: a kernel learns its
notebook's file name only from JupyterLab (JPY_SESSION_NAME); nbclient, `jupyter nbconvert
--execute`, nbval and papermill tell it nothing, but run it in the notebook's folder (papermill
with `--cwd`). Requests are identified by a hash of what they ask, so the notebooks of one folder
share the file without mixing up their answers, and copying the folder shares them. Not in the
notebook's metadata: the kernel cannot write the notebook while a front end owns the file.

Format: JSON Lines, one recording a line, in the order the calls were made:
    {"key": "<sha256 of the request>", "model": ..., "endpoint": ..., "messages": [...],
     "options": {...}, "answer": {"status": "ok" | "incomplete", "text": ..., "input_tokens": ...,
     "output_tokens": ..., "cost": ..., "model": ..., "error": ...}}
Adding is appending whole lines under an advisory lock, so kernels recording in the same folder
lose nothing; an answer equal to the recorded one is not written again (re-recording a notebook
whose answers did not change leaves the file as it was); a new answer to a recorded request
rewrites the file without the old line. Messages, options and answers are redacted: keys never
reach a recording.

Read as untrusted input (it comes with someone else's notebook): a recording only supplies an
answer's text and token counts, looked up by a key computed here from the request this kernel is
about to make, so it can never choose where a request goes or what it carries. Sizes are bounded;
a line that is not a valid recording is skipped with a warning.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import RecordingsUnavailable

FILE_NAME = "llm-recordings.jsonl"
STATUSES = ("ok", "incomplete")          # what is recorded: answers, complete or cut short
MAX_FILE_BYTES = 100 * 1024 * 1024
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_TEXT_CHARS = 4_000_000
MAX_TOKENS = 10 ** 9
MAX_NOTE_CHARS = 2_000                   # error messages, model names
_KEY = re.compile(r"[0-9a-f]{64}")

try:  # advisory locks where the platform has them (not Windows: appends there are unlocked)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def notebook_folder() -> str:
    """The folder of the notebook this kernel runs: JupyterLab names the notebook's path in
    JPY_SESSION_NAME; every other runner starts the kernel in the notebook's folder."""
    session_name = os.environ.get("JPY_SESSION_NAME") or ""
    if os.path.isabs(session_name):
        return os.path.dirname(session_name)
    return os.getcwd()


@dataclass(slots=True)
class Recording:
    """One request's recorded answer."""
    key: str
    status: str
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None            # USD when it was recorded (a replay costs nothing)
    model: str | None = None
    error: str | None = None             # why an incomplete answer stopped
    line: str = ""                       # the line as stored (kept whole when rewriting)

    @property
    def answer(self) -> dict:
        return {"status": self.status, "text": self.text, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost": self.cost, "model": self.model,
                "error": self.error}

    @classmethod
    def parse(cls, line: str) -> "Recording":
        """A recording from one stored line; ValueError says what is wrong with it."""
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise ValueError("not JSON") from None
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        key = obj.get("key")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError("its key is not a request hash")
        answer = obj.get("answer")
        if not isinstance(answer, dict):
            raise ValueError("it has no answer")
        status = answer.get("status")
        if status not in STATUSES:
            raise ValueError(f"its status is not one of {', '.join(STATUSES)}")
        text = answer.get("text")
        if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"its text is not a string of at most {MAX_TEXT_CHARS:,} characters")
        return cls(key, status, text, _count(answer, "input_tokens"),
                   _count(answer, "output_tokens"), _cost(answer.get("cost")),
                   _note(answer.get("model")), _note(answer.get("error")), line)


def _count(answer: dict, name: str) -> int | None:
    value = answer.get(name)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_TOKENS:
        raise ValueError(f"its {name} is not a whole number from 0 to {MAX_TOKENS:,}")
    return value


def _cost(value) -> float | None:
    # Informational only (a replayed call costs nothing): anything odd is dropped, not refused.
    if type(value) in (int, float) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _note(value) -> str | None:
    # (shown only inside an LLMError, whose message is redacted)
    return value[:MAX_NOTE_CHARS] if isinstance(value, str) else None


def entry_line(key: str, *, model: str, endpoint: str | None, messages: list[dict],
               options: dict, answer: dict) -> str:
    """The stored line of a new recording, redacted (keys never reach a recording)."""
    from .redact import loggable_options, redact

    def clean(value):
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    answer = dict(answer, text=redact(answer["text"] or ""),
                  error=redact(answer["error"]) if answer.get("error") else None)
    record = {"key": key, "model": model, "endpoint": endpoint, "messages": clean(messages),
              "options": loggable_options(options), "answer": answer}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


class Recordings:
    """The recordings file at `path`: read when it changes, appended to under a lock."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = None                       # (inode, size, mtime) of what was read
        self._entries: dict[str, Recording] = {}
        self._warned_stamp = None

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._entries)

    def get(self, key: str) -> Recording | None:
        with self._lock:
            self._refresh()
            return self._entries.get(key)

    def get_many(self, keys) -> dict[str, Recording]:
        with self._lock:
            self._refresh()
            entries = self._entries
            return {k: entries[k] for k in keys if k in entries}

    def add(self, lines: list[str]) -> int:
        """Store new recordings (entry_line's lines); returns how many changed the file."""
        with self._lock, self._exclusive() as f:
            self._refresh()                      # other kernels' lines too (the file changed)
            entries = self._entries
            new, replaced = {}, False
            for line in lines:
                try:
                    entry = Recording.parse(line)
                except ValueError as exc:   # e.g. an answer too long to replay
                    warnings.warn(f"llm-notebook: an answer was not recorded ({exc})", stacklevel=3)
                    continue
                old = new.get(entry.key) or entries.get(entry.key)
                if old is not None and old.answer == entry.answer:
                    continue
                replaced = replaced or entry.key in entries
                new[entry.key] = entry
            if not new:
                return 0
            if replaced:
                kept = [e.line for k, e in entries.items() if k not in new]
                self._rewrite(kept + [e.line for e in new.values()])
                st = os.stat(self.path)
            else:
                text = "".join(e.line + "\n" for e in new.values())
                f.seek(0, os.SEEK_END)
                if f.tell():
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":      # a file edited by hand, without a last newline
                        text = "\n" + text
                f.write(text.encode("utf-8"))    # appended in one write (O_APPEND)
                f.flush()
                st = os.fstat(f.fileno())
            for key, entry in new.items():       # in the file's order: replaced ones last
                entries.pop(key, None)
                entries[key] = entry
            # Still under the lock: what is on disk is what this object holds, so the next add
            # need not read the file again unless another kernel changes it.
            self._stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            return len(new)

    # -- the file ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        """(under self._lock) Read the file again if it changed since it was last read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._entries = None, {}
            return
        except OSError as exc:
            raise self._unavailable(exc) from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        if st.st_size > MAX_FILE_BYTES:
            raise RecordingsUnavailable(
                f"the recordings file {self.path} is {st.st_size / 1e6:.0f} MB, more than the "
                f"{MAX_FILE_BYTES // 2**20} MB a notebook's recordings may take; record the "
                "notebook again into a new file (LLMNotebook.recordings)")
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise self._unavailable(exc) from None
        self._entries, problems = _parse_lines(data)
        self._stamp = stamp
        if problems and self._warned_stamp != stamp:
            self._warned_stamp = stamp
            number, why = problems[0]
            warnings.warn(f"llm-notebook: skipped {len(problems)} line(s) of {self.path} that are "
                          f"not recordings (line {number}: {why}); record those calls again to "
                          "replace them", stacklevel=4)

    @contextmanager
    def _exclusive(self):
        """The file opened for appending, locked against other writers (kernels). A writer that
        waited while the file was replaced by a rewrite opens the new one."""
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
            while True:
                f = open(self.path, "a+b")
                try:
                    if fcntl is not None:
                        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                    if os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino:
                        break
                except FileNotFoundError:
                    pass
                except BaseException:
                    f.close()
                    raise
                f.close()
        except OSError as exc:
            raise self._unavailable(exc) from None
        try:
            yield f
        finally:
            f.close()

    def _rewrite(self, lines: list[str]) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".llm-recordings-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write("".join(line + "\n" for line in lines).encode("utf-8"))
            mode = os.stat(self.path).st_mode & 0o777
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _unavailable(self, exc: OSError) -> RecordingsUnavailable:
        why = exc.strerror or type(exc).__name__
        return RecordingsUnavailable(
            f"cannot use the recordings file {self.path}: {why}; set LLMNotebook.recordings "
            "(or $LLM_NOTEBOOK_RECORDINGS) to a file you can read and write")


def _parse_lines(data: bytes) -> tuple[dict[str, Recording], list[tuple[int, str]]]:
    entries: dict[str, Recording] = {}
    problems: list[tuple[int, str]] = []
    lines = data.split(b"\n")
    last = len(lines)
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            problems.append((number, f"longer than {MAX_LINE_BYTES // 2**20} MB"))
            continue
        try:
            line = raw.decode("utf-8")
            entry = Recording.parse(line)
        except ValueError as exc:   # (UnicodeDecodeError too)
            if number < last:       # not the unfinished last line another kernel is writing
                problems.append((number, "not UTF-8 text" if isinstance(exc, UnicodeDecodeError)
                                 else str(exc)))
            continue
        entries.pop(entry.key, None)    # a later line wins, and keeps the order of the file
        entries[entry.key] = entry
    return entries, problems
