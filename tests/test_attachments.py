"""Attachments (images, PDFs) from `ask`, `%%llm --attach` and DataFrame columns: sent to the
loopback server as OpenAI content parts, hashed into the cache key, logged by hash and type,
refused before sending for a model that reads text only."""

from __future__ import annotations

import base64
import io
import json

import pandas as pd
import pytest
from cells import ok, run

from llm_notebook import attachments
from llm_notebook.errors import AttachmentError

MODEL = "loop/loopback-model"


def png(color=(255, 0, 0), size=(4, 4)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def red(tmp_path):
    path = tmp_path / "red.png"
    path.write_bytes(png())
    return path


def parts_sent(loopback, i=-1) -> list:
    return loopback.requests()[i]["body"]["messages"][-1]["content"]


def data_url_bytes(url: str) -> bytes:
    head, data = url.split(",", 1)
    assert head.endswith(";base64")
    return base64.b64decode(data)


def test_ask_sends_an_image_as_a_content_part(loop_session, loopback, red):
    r = loop_session.ask("What colour?", model=MODEL, attachments=[red])
    assert r.status == "ok"
    text, image = parts_sent(loopback)
    assert text == {"type": "text", "text": "What colour?"}
    assert image["type"] == "image_url"
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert data_url_bytes(image["image_url"]["url"]) == red.read_bytes()


def test_the_log_keeps_hash_and_type_never_the_content(loop_session, loopback, red):
    r = loop_session.ask("What colour?", model=MODEL, attachments=str(red))
    row = loop_session.log.read("SELECT prompt, messages FROM calls WHERE id = ?", (r.id,))[0]
    encoded = base64.b64encode(red.read_bytes()).decode()
    assert encoded[:40] not in row["prompt"] and encoded[:40] not in row["messages"]
    assert "[attached: red.png (image/png" in row["prompt"]
    ref = json.loads(row["messages"])[-1]["content"][1]["attachment"]
    assert ref["mime_type"] == "image/png" and ref["size"] == red.stat().st_size
    import hashlib

    assert ref["sha256"] == hashlib.sha256(red.read_bytes()).hexdigest()


def test_the_attachment_is_in_the_cache_key(loop_session, loopback, red, tmp_path):
    blue = tmp_path / "blue.png"
    blue.write_bytes(png((0, 0, 255)))
    first = loop_session.ask("What colour?", model=MODEL, attachments=[red], cache=True)
    other = loop_session.ask("What colour?", model=MODEL, attachments=[blue], cache=True)
    again = loop_session.ask("What colour?", model=MODEL, attachments=[red], cache=True)
    assert len(loopback.requests()) == 2
    assert not first.cached and not other.cached and again.cached


def test_bytes_pil_images_and_pdfs_are_taken(loop_session, loopback):
    from PIL import Image

    image = Image.new("RGB", (2, 2), (0, 255, 0))
    loop_session.ask("Look", model=MODEL, attachments=[png(), image, PDF])
    _, raw, pil, pdf = parts_sent(loopback)
    assert raw["type"] == pil["type"] == "image_url"
    assert data_url_bytes(raw["image_url"]["url"]) == png()
    assert pdf["type"] == "file" and pdf["file"]["file_data"].startswith("data:application/pdf;")
    assert data_url_bytes(pdf["file"]["file_data"]) == PDF


def test_a_url_goes_to_the_provider_unfetched(loop_session, loopback):
    url = "http://127.0.0.1:9/never-fetched.png?sig=secret"
    loop_session.ask("Look", model=MODEL, attachments=[url])
    assert parts_sent(loopback)[1] == {"type": "image_url", "image_url": {"url": url}}
    prompt = loop_session.history(limit=1)["prompt"].iloc[0]
    assert "secret" not in prompt and "never-fetched.png" in prompt


def test_bad_files_fail_in_one_line_before_sending(loop_session, loopback, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(AttachmentError, match="not a PNG, JPEG, GIF or WebP image or a PDF"):
        loop_session.ask("Look", model=MODEL, attachments=[text])
    with pytest.raises(AttachmentError, match="cannot attach .*missing.png"):
        loop_session.ask("Look", model=MODEL, attachments=[tmp_path / "missing.png"])
    with pytest.raises(AttachmentError, match="not int"):
        loop_session.ask("Look", model=MODEL, attachments=[3])
    with pytest.raises(AttachmentError, match="empty"):
        loop_session.ask("Look", model=MODEL, attachments=[b""])
    assert loopback.requests() == []


def test_too_large_is_refused(monkeypatch, loop_session, loopback):
    monkeypatch.setattr(attachments, "MAX_BYTES", 10)
    with pytest.raises(AttachmentError, match="resize"):
        loop_session.ask("Look", model=MODEL, attachments=[png()])


# -- models that cannot take them -------------------------------------------------------------

def test_the_embedded_model_refuses_before_sending(loop_session, red):
    with pytest.raises(AttachmentError, match="local/smollm2 reads text only"):
        loop_session.ask("Look", model="local/smollm2", attachments=[red])
    assert loop_session.history().empty                 # nothing was sent, nothing logged


def test_a_text_only_endpoint_refuses_before_sending(loop_session, loopback, red):
    loop_session.add_endpoint("textonly", loopback.url, attachments=False)
    with pytest.raises(AttachmentError, match="text-only"):
        loop_session.ask("Look", model="textonly/loopback-model", attachments=[red])
    assert loopback.requests() == []


def test_litellms_model_map_decides_for_known_models(loop_session, red, monkeypatch):
    # gpt-3.5-turbo takes no images (litellm's map): refused before any request.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-sent")
    with pytest.raises(AttachmentError, match="does not take images"):
        loop_session.ask("Look", model="openai/gpt-3.5-turbo", attachments=[red])


def test_litellm_sends_the_same_parts(loop_session, loopback, red):
    loop_session.add_endpoint("viallm", loopback.url, via="litellm", api_key="sk-loop-test")
    loop_session.ask("What colour?", model="viallm/loopback-model", attachments=[red])
    text, image = parts_sent(loopback)
    assert text["text"] == "What colour?"
    assert data_url_bytes(image["image_url"]["url"]) == red.read_bytes()


# -- DataFrame columns ------------------------------------------------------------------------

def test_map_sends_a_column_of_images_and_fails_only_the_bad_row(loop_session, loopback, red,
                                                                 tmp_path):
    frame = pd.DataFrame({"name": ["red", "gone", "bytes"],
                          "image": [str(red), str(tmp_path / "gone.png"), png((0, 0, 9))]})
    out = frame.llm.map("Describe {name}", model=MODEL, attachments="image", progress=False)
    assert out.isna().tolist() == [False, True, False]
    assert len(loopback.requests()) == 2
    for request in loopback.requests():
        assert request["body"]["messages"][-1]["content"][1]["type"] == "image_url"
    errors = loop_session.job(out.attrs["llm"]["job_id"]).errors()
    assert "attachment column 'image'" in errors["error"].iloc[0]


def test_map_refuses_a_text_only_model_for_the_whole_run(loop_session, loopback, red):
    frame = pd.DataFrame({"name": ["red"], "image": [str(red)]})
    with pytest.raises(AttachmentError, match="reads text only"):
        frame.llm.map("Describe {name}", model="local/smollm2", attachments="image",
                      progress=False)


def test_extract_reads_fields_from_an_image_column(loop_session, loopback, red):
    frame = pd.DataFrame({"caption": ["colour: red"], "image": [str(red)]})
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}
    out = frame.llm.extract(schema, attachments="image", model="loop/loopback-judge",
                            progress=False)
    assert out["colour"].tolist() == ["red"]
    assert parts_sent(loopback)[1]["type"] == "image_url"


# -- %%llm --attach ---------------------------------------------------------------------------

@pytest.fixture
def ip(ipshell, loop_session):
    return ipshell


def test_cell_attaches_a_file_of_the_notebook_folder(ip, loop_session, loopback, red,
                                                     monkeypatch):
    monkeypatch.setattr(loop_session, "_notebook_folder", str(red.parent))
    ok(ip, "%%llm loop/loopback-model --attach red.png\nWhat colour?")
    text, image = parts_sent(loopback)
    assert data_url_bytes(image["image_url"]["url"]) == red.read_bytes()


def test_cell_refuses_files_outside_the_notebook_folder_and_urls(ip, loop_session, loopback,
                                                                 red, tmp_path, monkeypatch):
    folder = tmp_path / "nb"
    folder.mkdir()
    monkeypatch.setattr(loop_session, "_notebook_folder", str(folder))
    result, _ = run(ip, f"%%llm loop/loopback-model --attach {red}\nWhat colour?")
    assert "outside the notebook's folder" in str(result.error_in_exec)
    result, _ = run(ip, "%%llm loop/loopback-model --attach http://x/y.png\nWhat colour?")
    assert "not URLs" in str(result.error_in_exec)
    assert loopback.requests() == []


# -- what the process keeps -------------------------------------------------------------------

def test_a_file_changed_after_attaching_is_refused_when_sent(loop_session, loopback, tmp_path):
    red = tmp_path / "only-here.png"       # bytes no other test holds in memory
    red.write_bytes(png((123, 45, 67), size=(7, 3)))
    ref = attachments.load(red)
    red.write_bytes(png((9, 9, 9), size=(5, 5)))
    with pytest.raises(AttachmentError, match="changed after it was attached"):
        loop_session.ask("Look", model=MODEL, attachments=[ref])
    assert loopback.requests() == []


def test_bytes_in_memory_are_capped_oldest_first(monkeypatch):
    sources = attachments._Sources()
    monkeypatch.setattr(attachments, "MEMORY_CAP", 10)
    sources.keep_bytes("a", b"123456")
    sources.keep_bytes("b", b"123456")
    assert list(sources.memory) == ["b"] and sources.memory_bytes == 6
    with pytest.raises(AttachmentError, match="attach it again"):
        sources.content({"sha256": "a", "name": "old.png"})


def test_a_recorded_call_with_an_attachment_replays_without_the_file(loop_session, loopback,
                                                                     red, tmp_path):
    loop_session.config.recordings = str(tmp_path / "nb" / "llm-recordings.jsonl")
    loop_session.config.replay = "record"
    first = loop_session.ask("What colour?", model=MODEL, attachments=[red])
    recorded = (tmp_path / "nb" / "llm-recordings.jsonl").read_text()
    assert base64.b64encode(red.read_bytes()).decode()[:40] not in recorded
    loop_session.config.replay = "replay"
    loop_session.add_endpoint("loop", "http://127.0.0.1:9/v1")   # nothing listens there
    again = loop_session.ask("What colour?", model=MODEL, attachments=[red])
    assert again.replayed and again.text == first.text
    assert len(loopback.requests()) == 1


def test_cell_with_a_text_only_model_fails_in_one_line(ip, loop_session, red, monkeypatch):
    monkeypatch.setattr(loop_session, "_notebook_folder", str(red.parent))
    result, cap = run(ip, "%%llm local/smollm2 --attach red.png\nWhat colour?")
    from IPython.core.error import UsageError

    assert isinstance(result.error_in_exec, UsageError)          # a magic's one-line error
    assert "reads text only" in str(result.error_in_exec)
    assert "Traceback" not in cap.stdout + cap.stderr


def test_a_text_only_model_is_refused_even_when_no_row_has_a_readable_file(loop_session,
                                                                          tmp_path):
    frame = pd.DataFrame({"name": ["gone"], "image": [str(tmp_path / "gone.png")]})
    with pytest.raises(AttachmentError, match="reads text only.*column 'image'"):
        frame.llm.map("Describe {name}", model="local/smollm2", attachments="image",
                      progress=False)


def test_a_long_run_sends_every_chunks_attachments(loop_session, loopback, monkeypatch):
    # Rows are built a chunk at a time (batch/feed.py): attachments past the first chunk (and
    # past the rows checked up front) go too.
    import functools

    from llm_notebook.batch import engine, feed

    monkeypatch.setattr(engine, "Feed", functools.partial(feed.Feed, size=100))
    frame = pd.DataFrame({"n": range(300), "image": [png((i, 1, 7)) for i in range(300)]})
    out = frame.llm.map("Picture {n}", model=MODEL, attachments="image", progress=False)
    assert out.notna().all()
    sent = loopback.requests()
    assert len(sent) == 300
    assert all(r["body"]["messages"][-1]["content"][1]["type"] == "image_url" for r in sent)
