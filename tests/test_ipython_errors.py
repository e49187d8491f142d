"""Errors a user can fix show as one line in IPython; everything else keeps its traceback."""

from __future__ import annotations

import re


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(ipshell, capsys):
    ipshell.run_cell("import pandas as pd\n_df = pd.DataFrame({'review': ['fine']})")
    capsys.readouterr()

    result = ipshell.run_cell("_df.llm.map('Sentiment of: {revew}.', model='local/smollm2')")
    out = _plain(capsys.readouterr().out)
    assert type(result.error_in_exec).__name__ == "MissingColumnError"
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert "MissingColumnError" in lines[0] and "did you mean 'review'" in lines[0]
    assert "Traceback" not in out

    ipshell.run_cell("import llm_notebook\nllm_notebook.session().ask('hi', model='nosuch-model-x')")
    out = _plain(capsys.readouterr().out)
    assert "UnknownModelError: unknown model 'nosuch-model-x'" in out
    assert "Traceback" not in out

    ipshell.run_cell("1/0")
    out = _plain(capsys.readouterr().out)
    assert "Traceback" in out and "ZeroDivisionError" in out


def test_a_users_own_handler_is_left_alone():
    from llm_notebook import ipython_errors

    class Shell:
        custom_exceptions = (KeyError,)

        def set_custom_exc(self, *args):  # pragma: no cover - must not be called
            raise AssertionError("replaced the user's handler")

    ipython_errors.install(Shell())
    ipython_errors.install(None)
