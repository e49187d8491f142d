"""LLMNotebook settings: help on every trait, traitlets Config / config files / %config, clear
errors for bad values, and the LLM_NOTEBOOK_LOG override."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from traitlets import TraitError
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

import llm_notebook
from llm_notebook.config import LLMNotebook

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(llm_notebook.__file__)))
REQUIRED = {"default_model", "log_path", "cache", "timeout", "max_retries", "deadline"}


def test_every_trait_is_configurable_with_help():
    traits = LLMNotebook.class_traits(config=True)
    assert REQUIRED <= set(traits)
    for name, trait in traits.items():
        assert trait.help and len(trait.help) > 20, f"LLMNotebook.{name} has no help text"
    # Every trait is documented where %config shows it.
    text = LLMNotebook.class_get_help()
    assert all(f"--LLMNotebook.{name}" in text for name in traits)


def test_traitlets_config_object_sets_values():
    c = Config()
    c.LLMNotebook.default_model = "openai/gpt-4o-mini"
    c.LLMNotebook.timeout = 12.5
    c.LLMNotebook.max_retries = 0
    c.LLMNotebook.cache = True
    conf = LLMNotebook(config=c)
    assert (conf.default_model, conf.timeout, conf.max_retries, conf.cache) == (
        "openai/gpt-4o-mini", 12.5, 0, True)


def test_jupyter_config_file_sets_values(tmp_path):
    (tmp_path / "jupyter_server_config.py").write_text(
        'c.LLMNotebook.deadline = 42.0\nc.LLMNotebook.prices = {"lab/*": {"input": 1, "output": 2}}\n')
    loaded = PyFileConfigLoader("jupyter_server_config.py", path=str(tmp_path)).load_config()
    conf = LLMNotebook(config=loaded)
    assert conf.deadline == 42.0 and conf.prices == {"lab/*": {"input": 1, "output": 2}}


@pytest.mark.parametrize("name, value, message", [
    ("timeout", -1, "timeout must be a positive number of seconds"),
    ("deadline", 0, "deadline must be a positive number of seconds"),
    ("max_retries", -2, "max_retries must be 0 or more"),
    ("budget_day", -5.0, "budget_day must be 0 (no limit) or a positive USD amount"),
    ("timeout", "soon", "timeout"),
    ("cache", "maybe", "cache"),
])
def test_bad_values_raise_a_clear_trait_error(name, value, message):
    conf = LLMNotebook()
    before = getattr(conf, name)
    with pytest.raises(TraitError) as err:
        setattr(conf, name, value)
    assert message in str(err.value)
    assert getattr(conf, name) == before


def test_log_path_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_NOTEBOOK_LOG", str(tmp_path / "from-env.db"))
    assert LLMNotebook().resolved_log_path() == str(tmp_path / "from-env.db")
    explicit = LLMNotebook(log_path=str(tmp_path / "explicit.db"))
    assert explicit.resolved_log_path() == str(tmp_path / "explicit.db")
    monkeypatch.setenv("LLM_NOTEBOOK_LOG", "~/somewhere/log.db")
    assert LLMNotebook().resolved_log_path() == os.path.expanduser("~/somewhere/log.db")


def test_log_path_default_is_the_user_data_dir(monkeypatch):
    monkeypatch.delenv("LLM_NOTEBOOK_LOG", raising=False)
    from platformdirs import user_data_dir

    path = LLMNotebook().resolved_log_path()
    assert path.startswith(user_data_dir("llm-notebook", appauthor=False))
    assert path.endswith("log.db")


def test_session_writes_where_the_env_says(nb_session, log_path, loopback):
    nb_session.add_endpoint("loop", loopback.url)
    nb_session.ask("hi", model="loop/m")
    assert nb_session.log.path == log_path and os.path.getsize(log_path) > 0


def test_percent_config_in_ipython_reaches_the_session(tmp_path):
    # A real IPython shell in a subprocess (a shell singleton would leak into other tests).
    script = textwrap.dedent("""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        import llm_notebook
        shell.run_line_magic("config", "LLMNotebook.default_model = 'local/smollm2'")
        shell.run_line_magic("config", "LLMNotebook.timeout = 7.5")
        s = llm_notebook.session()
        print("VALUES", s.config.default_model, s.config.timeout)
        shell.run_line_magic("config", "LLMNotebook.timeout = -1")
        print("AFTER", s.config.timeout)
        shell.run_line_magic("config", "LLMNotebook.max_retries = 1")
        print("LATER", s.config.max_retries, s.default_model())
    """)
    env = dict(os.environ, LLM_NOTEBOOK_LOG=str(tmp_path / "log.db"),
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout + out.stderr
    assert "VALUES local/smollm2 7.5" in lines
    assert "AFTER 7.5" in lines                     # a bad value is refused...
    assert "timeout must be a positive number of seconds" in lines   # ...with a clear message
    assert "LATER 1 local/smollm2" in lines         # %config after first use still applies
