"""A grid exported as CSV, JSON and a self-contained HTML report, each parsed back; hostile
outputs stay text and nothing in the report loads or runs."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser

import pytest

from llm_notebook.comparison import checks, compare

HOSTILE = ('<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=2"> '
           '![beacon](http://192.0.2.1/beacon.png) <iframe src="http://192.0.2.1/"></iframe> '
           '[click](javascript:alert(1)) **bold**')


class Collect(HTMLParser):
    """Every tag with its attributes, and all text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def grid(loop_session, loopback):
    g = compare({"plain": "Say {word}", "hostile": "Repeat {word} [[reply:" + HOSTILE + "]]"},
                ["loop/a", "loop/b"],
                inputs=[{"word": "alpha", "note": "first, \"quoted\"\nline"}, {"word": "beta", "note": ""}],
                checks=[checks.contains("alpha"), checks.rubric(
                    'Is safe [[reply:{"pass": false, "reason": "has <b>markup</b>"}]]',
                    model="loop/judge")]).wait()
    g.rate(0, thumb="up", score=0.9, comment="<script>alert('c')</script> nice")
    return g


def test_csv_round_trip(grid, tmp_path):
    path = grid.export(tmp_path / "grid.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert len(rows) == 8
    assert list(rows[0])[:4] == ["prompt", "model", "word", "note"]
    first = rows[0]
    assert (first["prompt"], first["model"], first["word"]) == ("plain", "loop/a", "alpha")
    assert first["note"] == 'first, "quoted"\nline'
    assert first["output"] == "Echo: Say alpha"
    assert first["check:contains('alpha')"] == "True"
    assert first["rating"] in ("1", "1.0") and first["score"] == "0.9"
    assert "has <b>markup</b>" in first["failed_checks"]
    hostile = next(r for r in rows if r["prompt"] == "hostile")
    assert hostile["output"] == HOSTILE   # the data, unchanged


def test_json_round_trip(grid, tmp_path):
    doc = json.loads(grid.export(tmp_path / "grid.json").read_text(encoding="utf-8"))
    assert doc["comparison"]["models"] == ["loop/a", "loop/b"]
    assert [p["label"] for p in doc["comparison"]["prompts"]] == ["plain", "hostile"]
    assert [c["kind"] for c in doc["comparison"]["checks"]] == ["contains", "rubric"]
    assert len(doc["cells"]) == 8 and len(doc["summary"]) == 4
    cell = doc["cells"][0]
    assert cell["input"] == {"word": "alpha", "note": 'first, "quoted"\nline'}
    assert cell["checks"]["contains('alpha')"] == {"passed": True, "reason": "found 'alpha'"}
    assert cell["rating"] == 1 and cell["comment"].startswith("<script>")
    assert cell["tokens"] == cell["input_tokens"] + cell["output_tokens"]
    plain_a = doc["summary"][0]
    assert (plain_a["prompt"], plain_a["model"], plain_a["cells"], plain_a["thumbs_up"]) == ("plain", "loop/a", 2, 1)
    assert plain_a["pass_rate"] == 0.0   # the judge fails every cell


def test_html_report_is_self_contained_and_escapes_hostile_text(grid, tmp_path):
    path = grid.export(tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    parser = Collect()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    for forbidden in ("script", "img", "iframe", "object", "embed", "link", "base", "form"):
        assert forbidden not in tags, forbidden
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "src" not in attrs
        if tag == "a":
            assert attrs.get("href", "").startswith(("http://", "https://", "mailto:"))
    csp = next(a for t, a in parser.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp["content"] and "script-src" not in csp["content"]
    text = "".join(parser.text)
    assert "<script>window.__pwned=1</script>" in text          # shown as text
    assert '<img src=x onerror="window.__pwned=2">' in text
    assert "[image: beacon" in text and "192.0.2.1/beacon.png" in text
    assert "<script>alert('c')</script> nice" in text          # the comment, escaped
    assert "has <b>markup</b>" in text                          # the judge's reason, escaped
    assert ("strong", {}) in parser.tags                        # markdown still renders
    assert "Comparison report" in text and "Pass rate" in text and "👍" in text
    assert page.count('<article class="ok">') == 8


def test_formats_and_errors(grid, tmp_path):
    assert grid.to_html().startswith("<!DOCTYPE html>")
    assert json.loads(grid.to_json())["comparison"]["id"] == grid.id
    assert grid.export(tmp_path / "x.data", format="csv").read_text().startswith("prompt,")
    with pytest.raises(ValueError, match="cannot tell the format"):
        grid.export(tmp_path / "noext")
    with pytest.raises(ValueError, match="export format must be one of csv, json, html"):
        grid.export(tmp_path / "x.xlsx")
