"""Images and PDFs sent with a prompt: loaded, checked and hashed here, carried through the call
pipeline as a small reference, and turned into the provider's content parts only when sent.

A message that carries attachments has a list of OpenAI-style content parts: a text part and one
part per attachment, `{"type": "attachment", "attachment": {"sha256", "mime_type", "size",
"name"}}`. That reference is what the cache key hashes, what the log and the recordings keep
(hash, type and size: never the content), and what budgets estimate. The bytes stay in this
process (a file is read again when the request is sent; bytes, PIL images and uploads are kept in
memory, `MEMORY_CAP` in all), and `expand()` turns each reference into the provider's part when
a provider client builds its request: an image as `image_url` with a `data:` URL, a PDF as a
`file` part with `file_data` (the OpenAI format, which litellm translates for other providers).

Attachments are untrusted files: only PNG, JPEG, GIF, WebP images and PDFs are taken (known by
their first bytes, not their names), each at most `MAX_BYTES`. A URL is never fetched by this
process: it goes to the provider as an image URL, for the provider to fetch, and only when the
user's own code passes it (a `%%llm --attach` cell takes files of the notebook's folder only).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import os
import threading
from dataclasses import dataclass

from .errors import AttachmentError

PART = "attachment"                  # the content part type of a reference
MAX_BYTES = 20_000_000               # per attachment (OpenAI's image limit)
MAX_PER_MESSAGE = 20
MEMORY_CAP = 1_000_000_000           # bytes kept for attachments that are not files
ESTIMATED_TOKENS = 1_000             # an attachment's prompt tokens before the provider counts
TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WebP",
         "application/pdf": "PDF"}
_ACCEPTED = "a PNG, JPEG, GIF or WebP image or a PDF"
_IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                   ".gif": "image/gif", ".webp": "image/webp"}


@dataclass(frozen=True)
class Attachment:
    """One attachment as the pipeline knows it: its hash, type, size and name (a URL's hash is
    the hash of the URL; its `url` is shown without its query, which may hold a signature)."""
    sha256: str
    mime_type: str
    size: int | None
    name: str | None = None
    url: str | None = None

    def part(self) -> dict:
        ref = {"sha256": self.sha256, "mime_type": self.mime_type}
        if self.size is not None:
            ref["size"] = self.size
        if self.name:
            ref["name"] = self.name
        if self.url:
            ref["url"] = self.url
        return {"type": PART, "attachment": ref}

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")

    def describe(self) -> str:
        size = f", {_size(self.size)}" if self.size is not None else ""
        return f"{self.name or self.url or 'attachment'} ({self.mime_type}{size})"


# -- what this process keeps to send ----------------------------------------------------------

class _Sources:
    """sha256 -> where the content is: a file (path, size, mtime) or bytes in memory (LRU,
    MEMORY_CAP in all) or the full URL."""

    def __init__(self):
        self.lock = threading.Lock()
        self.files: dict[str, tuple[str, int, int]] = {}
        self.urls: dict[str, str] = {}
        self.memory: "collections.OrderedDict[str, bytes]" = collections.OrderedDict()
        self.memory_bytes = 0

    def keep_bytes(self, sha: str, data: bytes) -> None:
        with self.lock:
            if sha in self.memory:
                self.memory.move_to_end(sha)
                return
            self.memory[sha] = data
            self.memory_bytes += len(data)
            while self.memory_bytes > MEMORY_CAP and len(self.memory) > 1:
                _, old = self.memory.popitem(last=False)
                self.memory_bytes -= len(old)

    def content(self, ref: dict) -> bytes:
        sha = ref.get("sha256")
        with self.lock:
            data = self.memory.get(sha)
            found = self.files.get(sha)
        if data is not None:
            return data
        if found is None:
            raise AttachmentError(f"{_ref_name(ref)} is no longer held by this kernel (after a "
                                  "restart, or too many attachments in memory); attach it again")
        path, size, mtime = found
        try:
            stat = os.stat(path)
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime):
                data = _read(path, stat.st_size)
                if hashlib.sha256(data).hexdigest() != sha:
                    raise AttachmentError(f"{path} changed after it was attached; attach it again")
                return data
            return _read(path, size)
        except OSError as exc:
            raise AttachmentError(f"cannot read the attached file {path}: "
                                  f"{exc.strerror or exc}; attach it again") from None


_sources = _Sources()


# -- loading ----------------------------------------------------------------------------------

def load(item, *, within: str | None = None) -> Attachment:
    """An Attachment from a path, bytes, a URL (http/https; not fetched here) or a PIL image.

    `within`: a folder the file must be in (a notebook cell's `--attach`: such a cell may come
    from someone else, so it may send only files of the notebook's own folder). Raises
    AttachmentError with one line that says what to do."""
    if isinstance(item, Attachment):
        return item
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(item), name=None)
    if _is_pil_image(item):
        return _from_pil(item)
    if isinstance(item, os.PathLike):
        item = os.fspath(item)
    if isinstance(item, str):
        lowered = item[:8].lower()
        if lowered.startswith(("http://", "https://")):
            if within is not None:
                raise AttachmentError(f"a notebook cell attaches files of the notebook's folder, "
                                      f"not URLs ({_without_query(item)}); pass the URL from "
                                      "Python: session.ask(..., attachments=[url])")
            return _from_url(item)
        return _from_path(item, within)
    raise AttachmentError(f"an attachment is a file path, bytes, an http(s) URL or a PIL image, "
                          f"not {type(item).__name__}")


def load_all(items, *, within: str | None = None) -> list[Attachment]:
    if items is None:
        return []
    if isinstance(items, (str, bytes, bytearray, os.PathLike)) or _is_pil_image(items):
        items = [items]
    found = [load(item, within=within) for item in items]
    if len(found) > MAX_PER_MESSAGE:
        raise AttachmentError(f"{len(found)} attachments in one message; at most "
                              f"{MAX_PER_MESSAGE} are sent together")
    return found


def _from_path(path: str, within: str | None) -> Attachment:
    full = os.path.expanduser(path)
    if within is not None and not os.path.isabs(full):
        full = os.path.join(within, full)     # a cell's relative path: in the notebook's folder
    full = os.path.realpath(full)
    if within is not None:
        folder = os.path.realpath(within)
        if os.path.commonpath([folder, full]) != folder:
            raise AttachmentError(f"{path} is outside the notebook's folder ({folder}): a cell "
                                  "attaches files of that folder only; attach others from Python: "
                                  "session.ask(..., attachments=[path])")
    try:
        stat = os.stat(full)
    except OSError as exc:
        raise AttachmentError(f"cannot attach {path}: {exc.strerror or exc}") from None
    if not os.path.isfile(full):
        raise AttachmentError(f"cannot attach {path}: it is not a file")
    _check_size(stat.st_size, path)
    try:
        data = _read(full, stat.st_size)
    except OSError as exc:
        raise AttachmentError(f"cannot attach {path}: {exc.strerror or exc}") from None
    mime = _sniff(data, path)
    sha = hashlib.sha256(data).hexdigest()
    with _sources.lock:
        _sources.files[sha] = (full, stat.st_size, stat.st_mtime_ns)
    return Attachment(sha, mime, len(data), name=os.path.basename(full))


def _from_bytes(data: bytes, *, name: str | None) -> Attachment:
    _check_size(len(data), name or "the bytes")
    mime = _sniff(data, name or "the bytes")
    sha = hashlib.sha256(data).hexdigest()
    _sources.keep_bytes(sha, data)
    return Attachment(sha, mime, len(data), name=name)


def _from_pil(image) -> Attachment:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    name = os.path.basename(getattr(image, "filename", "") or "") or "image.png"
    return _from_bytes(buffer.getvalue(), name=name)


def _from_url(url: str) -> Attachment:
    path = _without_query(url)
    suffix = os.path.splitext(path)[1].lower()
    if suffix and suffix not in _IMAGE_SUFFIXES:
        raise AttachmentError(f"a URL attachment must be an image the provider can fetch "
                              f"({path}); download the file and attach its path")
    sha = hashlib.sha256(url.encode("utf-8")).hexdigest()
    with _sources.lock:
        _sources.urls[sha] = url
    return Attachment(sha, _IMAGE_SUFFIXES.get(suffix, "image/*"), None, url=path)


def from_upload(name: str, data: bytes) -> Attachment:
    """A file the user uploaded (the Chat's attach button)."""
    return _from_bytes(data, name=os.path.basename(name or "") or None)


def _is_pil_image(item) -> bool:
    # Without importing PIL: an object of PIL's Image class (or a subclass) by its module.
    return any(cls.__module__.startswith("PIL.") and cls.__name__ == "Image"
               for cls in type(item).__mro__)


def _check_size(size: int, what: str) -> None:
    if size > MAX_BYTES:
        raise AttachmentError(f"{what} is {_size(size)}, more than the {_size(MAX_BYTES)} an "
                              "attachment may be; make it smaller (e.g. resize the image)")
    if size == 0:
        raise AttachmentError(f"{what} is empty")


def _read(path: str, size: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(MAX_BYTES + 1)


def _sniff(data: bytes, what: str) -> str:
    """The type by the first bytes; a name's suffix is not trusted."""
    head = data[:12]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    raise AttachmentError(f"{what} is not {_ACCEPTED} (by its content); models take those; put "
                          "text in the prompt instead")


def _without_query(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


def _size(n: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


# -- messages ---------------------------------------------------------------------------------

def user_content(text: str, attachments: list[Attachment]):
    """A user message's content: the text alone, or a text part and one part per attachment."""
    if not attachments:
        return text
    return [{"type": "text", "text": text}, *(a.part() for a in attachments)]


def references(messages) -> list[dict]:
    """The attachment references of a request's messages."""
    found = []
    for message in messages:
        content = message.get("content")
        if type(content) is list:
            found += [p["attachment"] for p in content
                      if isinstance(p, dict) and p.get("type") == PART]
    return found


def prompt_text(content) -> str:
    """A message's content as the log's `prompt` column: its text, and a line per attachment
    (name, type, size, the start of its hash)."""
    if type(content) is str:
        return content
    if not isinstance(content, list):
        return str(content or "")
    lines = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            lines.append(str(part.get("text") or ""))
        elif part.get("type") == PART:
            ref = part.get("attachment") or {}
            size = f", {_size(ref['size'])}" if isinstance(ref.get("size"), int) else ""
            lines.append(f"[attached: {_ref_name(ref)} ({ref.get('mime_type')}{size}, "
                         f"sha256 {str(ref.get('sha256'))[:12]})]")
    return "\n".join(lines)


def estimated_tokens(content) -> int:
    """Prompt tokens of a list content before the provider counts them: its text at four
    characters a token plus ESTIMATED_TOKENS per attachment."""
    chars = attached = 0
    for part in content:
        if isinstance(part, dict) and part.get("type") == PART:
            attached += 1
        elif isinstance(part, dict):
            chars += len(str(part.get("text") or ""))
    return chars // 4 + attached * ESTIMATED_TOKENS


def expand(messages: list[dict]) -> list[dict]:
    """The messages as a provider takes them: each reference turned into its content part
    (`messages` itself when none holds one). Raises AttachmentError if the content is gone."""
    if not any(type(m.get("content")) is list for m in messages):
        return messages
    out = []
    for message in messages:
        content = message.get("content")
        if type(content) is list and any(isinstance(p, dict) and p.get("type") == PART
                                         for p in content):
            message = dict(message, content=[_provider_part(p) for p in content])
        out.append(message)
    return out


def _provider_part(part):
    if not isinstance(part, dict) or part.get("type") != PART:
        return part
    ref = part.get("attachment") or {}
    with _sources.lock:
        url = _sources.urls.get(ref.get("sha256"))
    if url is not None:
        return {"type": "image_url", "image_url": {"url": url}}
    mime = ref.get("mime_type")
    data = _sources.content(ref)
    data_url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    if str(mime).startswith("image/"):
        return {"type": "image_url", "image_url": {"url": data_url}}
    return {"type": "file", "file": {"filename": ref.get("name") or "document.pdf",
                                     "file_data": data_url}}


def _ref_name(ref: dict) -> str:
    return str(ref.get("name") or ref.get("url") or f"attachment {str(ref.get('sha256'))[:12]}")


# -- which models take them -------------------------------------------------------------------

def check_route(route, messages) -> None:
    """Refuse, before anything is sent, attachments the route's model cannot take: the
    embedded model reads text only; a model litellm's price map knows must say it takes images
    (`supports_vision`) or PDFs (`supports_pdf_input`); an endpoint declared text-only
    (`add_endpoint(..., attachments=False)`). An unknown model or endpoint is allowed: its
    server answers."""
    refs = references(messages)
    if refs:
        refuse_for(route, refs)


def refuse_for(route, refs: list[dict], *, text_only: bool = False) -> None:
    """Raise AttachmentError if the route's model cannot take `refs`; with `text_only`, only
    for a model that takes no attachment at all (the embedded model, an endpoint added with
    attachments=False): before the attachments themselves are known."""
    first = refs[0]
    kind = "image" if str(first.get("mime_type")).startswith("image/") else "file"
    what = f"the attached {kind} ({_ref_name(first)})"
    if route.kind == "local":
        raise AttachmentError(f"{route.model} reads text only: it cannot take {what}; use a model "
                              "that takes images, e.g. openai/gpt-4o-mini")
    if route.endpoint:
        if getattr(route, "attachments", None) is False:
            raise AttachmentError(f"endpoint {route.endpoint!r} was added as text-only "
                                  f"(attachments=False): {route.model} cannot take {what}")
        return
    if text_only:
        return
    from . import pricing

    info = pricing.model_info(route.model)
    if not info or info.get("mode") not in ("chat", None):
        return
    images = any(str(r.get("mime_type")).startswith("image/") for r in refs)
    pdfs = any(r.get("mime_type") == "application/pdf" for r in refs)
    if images and not info.get("supports_vision"):
        raise AttachmentError(f"{route.model} does not take images (litellm's model map): it "
                              f"cannot take {what}; use a model that does, e.g. openai/gpt-4o-mini")
    if pdfs and not info.get("supports_pdf_input"):
        raise AttachmentError(f"{route.model} does not take PDFs (litellm's model map): it "
                              f"cannot take {what}; use a model that does, e.g. openai/gpt-4o-mini")
