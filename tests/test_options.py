"""llm_notebook.options: the one definition of what an option is, used by templates, `--option`,
the log and the lean client."""

from __future__ import annotations

import pytest

from llm_notebook import options
from llm_notebook.redact import MASK, loggable_options


@pytest.mark.parametrize("name, value", [
    ("temperature", 0.2), ("max_tokens", 50), ("top_p", 1), ("stop", ["\n\n"]), ("stop", "END"),
    ("seed", 7), ("presence_penalty", -0.5), ("response_format", {"type": "json_object"}),
    ("logprobs", True), ("reasoning_effort", "low"), ("user", "me"), ("max_tokens", None),
])
def test_generation_options_pass(name, value):
    assert options.untrusted_problem(name, value) is None


@pytest.mark.parametrize("name, value, expected", [
    ("api_base", "http://x", "sets where the request goes"),
    ("langsmith_base_url", "http://x", "sets where the request goes"),   # by its name's shape
    ("api_key", "k", "sets a credential"),
    ("X-Api-Key", "k", "sets a credential"),
    ("extra_headers", {}, "sets what the request carries"),
    ("success_callback", ["x"], "sets what the request carries"),
    ("model", "x", "set it with model="),
    ("tools", [], "not a generation option"),
    ("temperature", "hot", "takes a number"),
    ("max_tokens", 1.5, "takes a whole number"),
    ("logprobs", 1, "takes true or false"),
    ("stop", [1], "takes text or a list of texts"),
    ("response_format", "json", "takes a mapping"),
    ("user", "x" * 2000, "takes text"),
    ("temperature", True, "takes a number"),
    (3, 1, "option names are text"),
])
def test_everything_else_is_refused_with_its_reason(name, value, expected):
    problem = options.untrusted_problem(name, value)
    assert problem is not None and expected in problem and "\n" not in problem


def test_routing_options_say_to_add_an_endpoint():
    assert "add_endpoint" in options.untrusted_problem("base_url", "http://x")


def test_destination_options_of_own_code():
    assert options.destination_options({"api_base": "http://x", "temperature": 0,
                                        "use_litellm_proxy": False, "fallbacks": None}) == ["api_base"]
    assert options.destination_options({"custom_llm_provider": "openai"}) == ["custom_llm_provider"]


def test_the_lean_client_sends_generation_in_the_body_and_headers_as_headers():
    given = {"temperature": 0, "api_key": "k", "api_base": "u", "extra_headers": {"X-T": 1},
             "headers": {"X-U": "2"}, "timeout": 3, "seed": None, "anything": 1}
    assert options.body_options(given) == {"temperature": 0, "anything": 1}
    assert options.request_headers(given) == {"X-U": "2", "X-T": "1"}


def test_the_log_keeps_no_credential_option_and_masks_credential_entries():
    logged = loggable_options({"api_key": "sk-0123456789abcdef0123", "aws_secret_access_key": "a",
                               "temperature": 0.1,
                               "extra_headers": {"Authorization": "Bearer abcdefgh12345678",
                                                 "X-Trace": "1"},
                               "api_base": "http://me:hunter2pass@host/v1"})
    assert logged == {"temperature": 0.1, "extra_headers": {"Authorization": MASK, "X-Trace": "1"},
                      "api_base": f"http://me:{MASK}@host/v1"}
