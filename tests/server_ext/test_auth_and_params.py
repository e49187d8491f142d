"""Every route of the extension needs a token, and bad parameters get a 400, never a 500."""

from __future__ import annotations

import re
import urllib.parse

import pytest
import tornado.web
from tornado.routing import PathMatches, Router

from llm_notebook.server import ROUTES

from .conftest import Reply, call_row

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _walk(router):
    """(matcher, handler class) of every rule in tornado's router tree."""
    for rule in getattr(router, "rules", []):
        target = rule.target
        if isinstance(target, Router) or hasattr(target, "rules"):
            yield from _walk(target)
        elif isinstance(target, type) and issubclass(target, tornado.web.RequestHandler):
            yield rule.matcher, target


def _ours(matcher, handler) -> bool:
    pattern = getattr(getattr(matcher, "regex", None), "pattern", "")
    return handler.__module__.startswith("llm_notebook") or "llm-notebook" in pattern


def _sample_path(matcher: PathMatches) -> str:
    """A concrete URL for a route pattern: each capture group filled with "1"."""
    pattern = matcher.regex.pattern.rstrip("$")
    path = re.sub(r"\((?:[^()\\]|\\.)*\)", "1", pattern)
    assert not set(path) & set("()[]*+?^$|"), f"cannot make a URL from route {pattern!r}"
    return path.replace("\\", "")


def _implemented(handler) -> list[str]:
    return [m for m in _METHODS
            if getattr(handler, m.lower()) is not getattr(tornado.web.RequestHandler, m.lower())]


@pytest.fixture
def extension_routes(jp_serverapp):
    routes = {}
    for matcher, handler in _walk(jp_serverapp.web_app.default_router):
        if _ours(matcher, handler):
            routes[_sample_path(matcher)] = handler
    return routes


def test_walk_finds_every_declared_route(extension_routes, jp_base_url):
    found = {re.sub(r"/1(?=/|$)", "/ID", p) for p in extension_routes}
    declared = {jp_base_url.rstrip("/") + "/llm-notebook/api" + re.sub(r"\(\[\^/\]\+\)", "ID", p)
                for p, _ in ROUTES}
    assert declared <= found, declared - found
    assert len(extension_routes) >= 9


@pytest.mark.parametrize("credentials", ["none", "wrong-token"])
def test_no_route_answers_without_a_valid_token(extension_routes, http_server_client, jp_asyncio_loop,
                                                credentials):
    headers = {} if credentials == "none" else {"Authorization": "token not-the-token"}
    reached = []
    for path, handler in extension_routes.items():
        for method in _implemented(handler):
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            response = jp_asyncio_loop.run_until_complete(http_server_client.fetch(
                path, method=method, body=body, headers=headers, raise_error=False,
                follow_redirects=False))
            if method == "OPTIONS":
                # CORS preflights carry no credentials by design (jupyter_server answers them
                # for every API handler); they must reveal nothing.
                if response.body:
                    reached.append((method, path, response.code, response.body[:80]))
            elif response.code not in (401, 403):
                reached.append((method, path, response.code))
    assert reached == []


def test_the_same_routes_answer_with_the_token(extension_routes, http_server_client, jp_asyncio_loop,
                                               jp_auth_header):
    # The walk must reach real handlers: with the token, no route is refused.
    for path, handler in extension_routes.items():
        for method in _implemented(handler):
            response = jp_asyncio_loop.run_until_complete(http_server_client.fetch(
                path, method=method, headers=jp_auth_header, raise_error=False))
            assert response.code not in (401, 403, 500), (method, path, response.code)


BAD = [
    ("history", {"limit": "0"}, "between 1 and 500"),
    ("history", {"limit": "501"}, "between 1 and 500"),
    ("history", {"limit": "ten"}, "whole number"),
    ("history", {"limit": "1e3"}, "whole number"),
    ("history", {"offset": "-1"}, "between 0"),
    ("history", {"preview": "-5"}, "between 1 and 20000"),
    ("history", {"preview": "0"}, "between 1 and 20000"),          # no unbounded previews
    ("history", {"preview": "1000000"}, "between 1 and 20000"),
    ("history", {"search": "x" * 501}, "limit is 500"),
    ("history", {"model": "a\x00b"}, "NUL"),
    ("history", {"colour": "red"}, "unknown parameter 'colour'"),
    ("history", [("limit", "1"), ("limit", "2")], "given 2 times"),
    ("usage", {"by": "week"}, "one of model, day, hour, notebook"),
    ("usage", {"since": "yesterday"}, "unix time"),
    ("usage", {"since": "nan"}, "between 0 and 1e11"),
    ("usage", {"since": "inf"}, "between 0 and 1e11"),
    ("usage", {"until": "-1"}, "between 0 and 1e11"),
    ("usage", {"since": "2000", "until": "1000"}, "after 'until'"),
    ("usage/summary", {"day_start": "1e300"}, "between 0 and 1e11"),
    ("usage/summary", {"notebook": "n" * 5000}, "limit is 4096"),
    ("conversations", {"limit": "-3"}, "between 1 and 500"),
    ("templates", {"tag": "t" * 101}, "limit is 100"),
    ("facets", {"x": "1"}, "unknown parameter"),
    ("status", {"verbose": "1"}, "unknown parameter"),
    ("calls/abc", {}, "whole number"),
    ("calls/0", {}, "between 1"),
    ("calls/99999999999999999999999", {}, "between 1"),
    ("conversations/a b", {}, "conversation id"),
    ("conversations/" + "c" * 200, {}, "conversation id"),
]


@pytest.mark.parametrize("path,params,message", BAD, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(BAD)])
def test_bad_parameters_get_400_with_a_message(api_raw, path, params, message):
    reply = api_raw(path, params)
    assert reply.code == 400, reply
    assert message in reply.json["message"]
    assert "Traceback" not in reply.text


@pytest.mark.parametrize("search", ['"', "*", "AND OR NOT", "NEAR(", "a:b", "\\", "'", "-x",
                                    "^", "(", ")", "{", "col:val*", '""""', "ünïcödé", "x" * 500])
def test_odd_search_text_never_errors(api, log, search):
    log.insert_call(call_row(prompt="plain words here"))
    reply = api("history", search=search)
    assert reply.code == 200, reply


@pytest.fixture
def api_raw(http_server_client, jp_asyncio_loop, jp_auth_header, jp_base_url):
    """Like `api`, but params may be a list of pairs (to repeat one) and the path is raw."""

    def call(path: str, params) -> Reply:
        pairs = params if isinstance(params, list) else list(params.items())
        url = f"{jp_base_url.rstrip('/')}/llm-notebook/api/{urllib.parse.quote(path)}"
        if pairs:
            url += "?" + urllib.parse.urlencode(pairs)
        return Reply(jp_asyncio_loop.run_until_complete(http_server_client.fetch(
            url, headers=jp_auth_header, raise_error=False)))

    return call


def test_jupyterlab_cache_buster_is_accepted(http_server_client, jp_asyncio_loop, jp_auth_header,
                                             jp_base_url):
    # ServerConnection.makeRequest appends `?<Date.now()>` (or `&<Date.now()>`) to every GET.
    for query in ("?1795687880923", "?limit=5&1795687880923"):
        url = f"{jp_base_url.rstrip('/')}/llm-notebook/api/history{query}"
        reply = Reply(jp_asyncio_loop.run_until_complete(http_server_client.fetch(
            url, headers=jp_auth_header, raise_error=False)))
        assert reply.code == 200, reply
    # a number with a value is not a cache buster
    assert Reply(jp_asyncio_loop.run_until_complete(http_server_client.fetch(
        f"{jp_base_url.rstrip('/')}/llm-notebook/api/history?123=4", headers=jp_auth_header,
        raise_error=False))).code == 400
