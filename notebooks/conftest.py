"""Each example notebook is a test (`pytest notebooks`): replayed from its recordings
(llm-recordings.jsonl, beside it) with no network and no key, it must run every cell and show
what it was saved with (llm_notebook/testing/notebooks.py). After changing a notebook or what it
calls, record it again; after a change in how outputs look, save it again (same answers):

    python -m llm_notebook.testing.notebooks record notebooks/NAME.ipynb
    python -m llm_notebook.testing.notebooks save notebooks/NAME.ipynb
"""

from __future__ import annotations

import pytest


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".ipynb" and ".ipynb_checkpoints" not in file_path.parts:
        return NotebookFile.from_parent(parent, path=file_path)
    return None


class NotebookFile(pytest.File):
    def collect(self):
        yield ReplayedNotebook.from_parent(self, name="replays what it shows")


class ReplayedNotebook(pytest.Item):
    def runtest(self):
        from llm_notebook.testing import notebooks

        found = notebooks.check(self.path)
        if found:
            raise NotebookDiffers(found)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, NotebookDiffers):
            return (f"{self.path.name} shows something else than its saved outputs (if that is "
                    f"meant, save it again: python -m llm_notebook.testing.notebooks save "
                    f"{self.path}; or record it again: ... record ...):\n\n"
                    + "\n\n".join(excinfo.value.args[0]))
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}: replays what it shows"


class NotebookDiffers(Exception):
    pass
