"""llm_notebook.checks: each kind's verdicts and reasons, the dict/str/function shorthands, the
judge's reply parsing, and clear errors for bad checks."""

from __future__ import annotations

import pytest

from llm_notebook.comparison import checks


def cell(output: str, **extra) -> dict:
    return {"output": output, "input": {}, "latency": 1.0, "cost": 0.002, **extra}


def test_contains_not_contains_equals():
    assert checks.contains("Paris").run(cell("It is Paris.")) == (True, "found 'Paris'")
    assert checks.contains("paris").run(cell("Paris")) == (False, "missing 'paris'")
    assert checks.contains("paris", ignore_case=True).run(cell("PARIS"))[0]
    both = checks.contains(["Paris", "France"])
    assert both.run(cell("Paris, France"))[0]
    assert both.run(cell("Paris")) == (False, "missing 'France'")
    assert checks.not_contains(["sorry", "AI"]).run(cell("As an AI")) == (False, "found 'AI'")
    assert checks.not_contains("sorry").run(cell("Sure"))[0]
    assert checks.equals("4").run(cell(" 4\n"))[0]
    assert checks.equals(4).run(cell("4"))[0]
    assert checks.equals("Yes", ignore_case=True).run(cell("yes"))[0]
    verdict = checks.equals("4").run(cell("four"))
    assert verdict == (False, "expected '4', got 'four'")


def test_values_from_an_input_column():
    check = checks.equals(column="expected")
    assert check.name == "equals(column=expected)"
    assert check.run(cell("Lima", input={"expected": "Lima"}))[0]
    assert not check.run(cell("Lima", input={"expected": "Quito"}))[0]
    assert check.run(cell("x", input={})) == (False, "input column 'expected' is missing in this row")
    assert check.run(cell("x", input={"expected": float("nan")}))[0] is False
    assert checks.contains(column="city").run(cell("I love Rome", input={"city": "Rome"}))[0]


def test_regex_json_and_schema():
    assert checks.regex(r"^\d+$").run(cell("42")) == (True, "matched '42'")
    assert checks.regex(r"^\d+$").run(cell("42 apples")) == (False, "no match")
    assert checks.is_json().run(cell('{"a": 1}'))[0]
    assert checks.is_json().run(cell('```json\n{"a": 1}\n```'))[0]
    ok, reason = checks.is_json().run(cell("{a: 1}"))
    assert not ok and reason.startswith("not valid JSON")
    schema = checks.json_schema({"type": "object", "required": ["name"],
                                 "properties": {"age": {"type": "integer"}}})
    assert schema.run(cell('{"name": "Ada", "age": 36}'))[0]
    ok, reason = schema.run(cell('{"name": "Ada", "age": "old"}'))
    assert not ok and reason.startswith("at $.age:")
    assert schema.run(cell("nope"))[0] is False


def test_latency_and_cost_limits():
    assert checks.max_latency(2).run(cell("x", latency=1.5)) == (True, "1.50 s <= 2 s")
    assert checks.max_latency(1).run(cell("x", latency=1.5))[0] is False
    assert checks.max_latency(1).run(cell("x", latency=None)) == (False, "latency unknown")
    assert checks.max_cost(0.01).run(cell("x", cost=0.002))[0]
    assert checks.max_cost(0.001).run(cell("x", cost=0.002))[0] is False
    ok, reason = checks.max_cost(0.01).run(cell("x", cost=None))
    assert not ok and "config.prices" in reason
    assert checks.max_latency(2.5).name == "max_latency(2.5 s)"
    assert checks.max_cost(0.01).name == "max_cost($0.01)"


def test_rubric_prompt_and_verdicts():
    r = checks.rubric("Answers in one sentence", model="loop/judge")
    messages = r.messages(cell("Paris.", prompt_text="Capital of France?"))
    assert messages[0]["role"] == "system" and "JSON" in messages[0]["content"]
    user = messages[1]["content"]
    # the rubric first, then the request, then the output, each fenced
    assert user.index("Answers in one sentence") < user.index("Capital of France?") < user.index("Paris.")
    assert r.options == {"temperature": 0, "max_tokens": 200, "response_format": {"type": "json_object"}}
    assert r.verdict('{"pass": true, "reason": "one sentence"}') == (True, "one sentence")
    assert r.verdict('```json\n{"pass": false, "reason": "two"}\n```') == (False, "two")
    assert r.verdict('Sure! {"passed": "yes", "reason": "ok"} hope that helps') == (True, "ok")
    assert r.verdict('{"verdict": "FAIL"}') == (False, "failed")
    assert r.verdict("PASS - it is one sentence")[0] is True
    ok, reason = r.verdict("I think it is fine")
    assert not ok and reason.startswith("the judge's reply is not the JSON asked for")
    assert checks.rubric("x", temperature=0.5).options["temperature"] == 0.5


def test_shorthands_and_unique_names():
    made = checks.normalize([{"contains": "Paris"}, {"regex": "^a", "name": "starts"}, "is_json",
                             {"max_latency": 3}, {"equals": None, "column": "expected"},
                             {"rubric": "polite", "model": "m"}, lambda out: len(out) < 5,
                             checks.contains("Paris")])
    assert [c.name for c in made] == ["contains('Paris')", "starts", "is_json", "max_latency(3 s)",
                                      "equals(column=expected)", "rubric('polite')", "custom",
                                      "contains('Paris') #2"]
    assert made[5].judged and made[5].model == "m"
    assert checks.normalize(None) == [] and len(checks.normalize(checks.is_json())) == 1
    same = checks.contains("x")
    twice = checks.normalize([same, same])
    assert [c.name for c in twice] == ["contains('x')", "contains('x') #2"] and same.name == "contains('x')"


def test_custom_functions():
    def short(output):
        return len(output) < 10

    def mentions_input(output, cell):
        return cell["input"]["city"] in output, f"looked for {cell['input']['city']}"

    assert checks.custom(short).run(cell("tiny")) == (True, "passed")
    assert checks.custom(short).name == "short"
    assert checks.custom(mentions_input).run(cell("Rome!", input={"city": "Rome"})) == (True, "looked for Rome")
    ok, reason = checks.custom(lambda out: 1 / 0).run(cell("x"))
    assert not ok and reason == "the check raised ZeroDivisionError: division by zero"


@pytest.mark.parametrize("bad, message", [
    ({"containz": "x"}, "a check dict names exactly one kind"),
    ({"contains": "x", "regex": "y"}, "a check dict names exactly one kind"),
    ("contains", "only is_json can be named alone"),
    (42, "a check is llm_notebook.checks"),
    ({"regex": "("}, "is not a valid regular expression"),
    ({"max_latency": -1}, "max_latency() needs a number of seconds >= 0"),
    ({"max_cost": "cheap"}, "max_cost() needs a number of USD"),
    ({"contains": ""}, "contains() needs a non-empty string"),
    ({"json_schema": {"type": "nonsense"}}, "not a valid JSON schema"),
    ({"rubric": "  "}, "rubric() needs the criteria as text"),
    ({"contains": "x", "colour": "red"}, "unexpected keyword argument 'colour'"),
])
def test_bad_checks_say_how_to_fix_them(bad, message):
    with pytest.raises((ValueError, TypeError), match=__import__("re").escape(message)):
        checks.normalize([bad])


def test_a_value_or_a_column_not_both():
    with pytest.raises(ValueError, match="takes a value or column="):
        checks.equals("x", column="y")
    with pytest.raises(ValueError, match="takes a value or column="):
        checks.contains()
