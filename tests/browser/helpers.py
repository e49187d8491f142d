"""Driving a real JupyterLab in Chromium: the pieces every browser test shares.

`LabServer` starts and stops a `jupyter lab` subprocess; the functions below act on a
Playwright `Page` showing it. Everything waits on a DOM or kernel condition with a generous
deadline (the CI machine has 2 busy cores), never on a fixed sleep.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, urlsplit

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"

# Deadlines, in milliseconds for Playwright and seconds for Python waits.
LAB_START_TIMEOUT_S = 90
KERNEL_TIMEOUT_MS = 60_000
UI_TIMEOUT_MS = 30_000
EXECUTE_TIMEOUT_MS = 60_000

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

DARK_THEME = "JupyterLab Dark"
LIGHT_THEME = "JupyterLab Light"


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user_settings() -> dict[str, dict]:
    """Settings written before lab starts, so no toast or network check disturbs a test."""
    return {
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }


@dataclass
class LabServer:
    """A `jupyter lab` on 127.0.0.1 with its own port, token, root dir, config and data dirs.

    Kernels it starts inherit its environment: they import this checkout of llm_notebook and
    write to `log_path` (LLM_NOTEBOOK_LOG), the same log the server extension reads.

    With `python` set to another environment's interpreter and `checkout=False`, it runs that
    environment's installed llm-notebook instead (the installed-wheel check does this).
    """

    base_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    checkout: bool = True
    port: int = 0
    token: str = ""
    process: subprocess.Popen | None = None

    def __post_init__(self):
        self.base_dir = Path(self.base_dir)
        self.root_dir = self.base_dir / "root"
        self.log_path = self.base_dir / "llm-log" / "log.db"
        self.server_output = self.base_dir / "jupyter-lab.log"
        self.config_dir = self.base_dir / "config"
        self.data_dir = self.base_dir / "data"
        self.runtime_dir = self.base_dir / "runtime"
        self.extra_path_dir = self.base_dir / "jupyter-path"
        self.token = self.token or secrets.token_hex(24)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- setup ----------------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        for d in (self.root_dir, self.log_path.parent, self.config_dir, self.data_dir,
                  self.runtime_dir, self.extra_path_dir / "labextensions"):
            d.mkdir(parents=True, exist_ok=True)
        if self.checkout:
            # Our server extension, enabled explicitly: a source checkout has no installed
            # jupyter-config, and enabling it twice (when the wheel is installed) is harmless.
            (self.config_dir / "jupyter_server_config.json").write_text(json.dumps(
                {"ServerApp": {"jpserver_extensions": {"llm_notebook": True}}}))
        settings_root = self.config_dir / "lab" / "user-settings"
        for plugin, values in _user_settings().items():
            package, _, name = plugin.rpartition("/")
            target = settings_root / package / f"{name}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        # The lab extension built from this checkout (js/lab → llm_notebook/labextension) is
        # found through JUPYTER_PATH, so no test needs `jupyter labextension develop`, which
        # would write into the shared Python prefix.
        built = REPO_ROOT / "llm_notebook" / "labextension"
        link = self.extra_path_dir / "labextensions" / "llm-notebook"
        if self.checkout and (built / "package.json").exists() and not link.exists():
            link.symlink_to(built, target_is_directory=True)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # No real provider key reaches a kernel: tests decide which endpoints exist.
        for var in list(env):
            if var.endswith("_API_KEY"):
                del env[var]
        pythonpath = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if self.checkout:
            pythonpath.insert(0, str(REPO_ROOT))
        jupyter_path = [str(self.extra_path_dir)] + [
            p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p]
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        env.update({
            "LLM_NOTEBOOK_LOG": str(self.log_path),
            # The user-level dirs are replaced; the Python prefix's dirs (where the installed
            # lab and server extensions are registered) are still searched.
            "JUPYTER_CONFIG_DIR": str(self.config_dir),
            "JUPYTER_DATA_DIR": str(self.data_dir),
            "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
            "JUPYTER_PATH": os.pathsep.join(jupyter_path),
            "IPYTHONDIR": str(self.base_dir / "ipython"),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        # CI containers run as root, which jupyter refuses unless told.
        as_root = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
        return [
            self.python, "-m", "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.allow_remote_access=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # window.jupyterapp lets helpers run lab commands (open, theme) without clicking
            # through menus; user-facing behaviour is still driven through the DOM.
            "--LabApp.expose_app_in_browser=True",
            *as_root,
        ]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LabServer:
        self._prepare_dirs()
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            out = open(self.server_output, "ab")
            self.process = subprocess.Popen(
                self.command(), env=self.environment(), cwd=self.root_dir,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kernels die with it at stop()
            )
            out.close()
            try:
                self._wait_ready()
                return self
            except RuntimeError as exc:
                last_error = str(exc)
                self.stop()
                if "address already in use" not in last_error.lower():
                    break
        raise RuntimeError(last_error)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + LAB_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with code {self.process.returncode}:\n{self.output_tail()}")
            try:
                status = self.api("GET", "/api/status", timeout=5)
                if isinstance(status, dict) and "started" in status:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)  # polling interval of a readiness probe, not a wait for a result
        raise RuntimeError(
            f"jupyter lab did not answer /api/status within {LAB_START_TIMEOUT_S} s:\n"
            f"{self.output_tail()}")

    def output_tail(self, lines: int = 60) -> str:
        try:
            text = self.server_output.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            try:  # the clean way: the server shuts down its kernels and terminals itself
                self.api("POST", "/api/shutdown", timeout=10)
                proc.wait(timeout=20)
            except Exception:
                pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # Kernels are in the server's process group (start_new_session): end any left over.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(timeout=10)
        self.process = None

    # -- REST -----------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, *, token: str | None = "default",
            timeout: float = 30) -> Any:
        """Call the server's REST API; returns parsed JSON (or None for an empty body).

        HTTP errors raise urllib.error.HTTPError (its .code is the status).
        """
        headers = {"Content-Type": "application/json"}
        if token == "default":
            token = self.token
        if token:
            headers["Authorization"] = f"token {token}"
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def shutdown_all_kernels(self) -> None:
        """End every session and kernel, so one test's kernels don't load the next test."""
        try:
            for s in self.api("GET", "/api/sessions") or []:
                self.api("DELETE", f"/api/sessions/{s['id']}")
            for k in self.api("GET", "/api/kernels") or []:
                self.api("DELETE", f"/api/kernels/{k['id']}")
        except (OSError, urllib.error.URLError):
            pass

    def lab_url(self, workspace: str | None = None) -> str:
        """The lab page URL carrying the token (the server turns it into a login cookie).

        A fresh workspace name per page keeps one test's open tabs out of the next test.
        """
        ws = f"/workspaces/{quote(workspace)}" if workspace else ""
        return f"{self.url}/lab{ws}?reset&token={self.token}"


# -- notebooks on disk --------------------------------------------------------------------------


def write_notebook(root_dir: Path | str, name: str, cells: Iterable[Any]) -> Path:
    """Write `name` (relative to root_dir) with the given cells; returns its path.

    A cell is a string (code), a ("markdown"|"code"|"raw", source) pair, or an nbformat cell.
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    makers = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
              "raw": nbformat.v4.new_raw_cell}
    for cell in cells:
        if isinstance(cell, str):
            nb.cells.append(nbformat.v4.new_code_cell(cell))
        elif isinstance(cell, tuple):
            kind, source = cell
            nb.cells.append(makers[kind](source))
        else:
            nb.cells.append(cell)
    path = Path(root_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def read_notebook(root_dir: Path | str, name: str):
    return nbformat.read(str(Path(root_dir) / name), as_version=4)


# -- the lab page -------------------------------------------------------------------------------


def wait_for_lab(page, timeout: int = KERNEL_TIMEOUT_MS) -> None:
    """Wait until the lab shell is up and the app has finished restoring its layout."""
    page.wait_for_selector("#jp-main-dock-panel", state="attached", timeout=timeout)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.started !== undefined",
        timeout=timeout)
    page.evaluate("async () => { await window.jupyterapp.started; await window.jupyterapp.restored; }")
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=timeout)


def run_command(page, command: str, args: dict | None = None) -> Any:
    """Run a JupyterLab command (like the palette would) and return its JSON-able result."""
    return page.evaluate(
        """async ([id, args]) => {
            const result = await window.jupyterapp.commands.execute(id, args);
            try { return JSON.parse(JSON.stringify(result ?? null)); } catch { return null; }
        }""",
        [command, args or {}],
    )


def has_command(page, command: str) -> bool:
    return page.evaluate("(id) => window.jupyterapp.commands.hasCommand(id)", command)


def notebook_panel(page, path: str):
    """The Locator of the open notebook panel whose tab shows `path`'s file name."""
    panel_id = page.evaluate(
        """(path) => {
            const app = window.jupyterapp;
            for (const w of app.shell.widgets('main')) {
                if (w.context && w.context.path === path && w.content && w.content.model) {
                    return w.id;
                }
            }
            return null;
        }""",
        path,
    )
    if panel_id is None:
        raise AssertionError(f"no notebook panel is open for {path!r}")
    return page.locator(f'[id="{panel_id}"]')


def open_notebook(page, path: str, *, wait_idle: bool = True):
    """Open `path` (relative to root_dir) in the lab, wait for it to render; returns its panel."""
    run_command(page, "docmanager:open", {"path": path, "factory": "Notebook"})
    page.wait_for_function(
        """(path) => {
            const w = window.jupyterapp.shell.currentWidget;
            return !!(w && w.context && w.context.path === path && w.context.isReady
                      && w.node.querySelector('.jp-Notebook .jp-Cell'));
        }""",
        arg=path, timeout=KERNEL_TIMEOUT_MS)
    panel = notebook_panel(page, path)
    if wait_idle:
        wait_kernel_idle(page, path)
    return panel


def wait_kernel_idle(page, path: str, timeout: int = KERNEL_TIMEOUT_MS) -> None:
    """Wait until the notebook's kernel is started and idle (both the model and the toolbar)."""
    page.wait_for_function(
        """(path) => {
            const app = window.jupyterapp;
            for (const w of app.shell.widgets('main')) {
                if (w.context && w.context.path === path && w.sessionContext) {
                    const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
                    const indicator = w.node.querySelector('.jp-Notebook-ExecutionIndicator');
                    const shown = !indicator || indicator.getAttribute('data-status') === 'idle';
                    return !!kernel && kernel.status === 'idle'
                        && kernel.connectionStatus === 'connected' && shown;
                }
            }
            return false;
        }""",
        arg=path, timeout=timeout)


def cells(panel):
    return panel.locator(".jp-Notebook .jp-Cell")


def cell(panel, index: int):
    return cells(panel).nth(index)


def _prompt_text(panel, index: int) -> str:
    prompt = cell(panel, index).locator(".jp-InputArea-prompt").first
    return (prompt.text_content() or "").strip()


def select_cell(page, panel, index: int) -> None:
    """Make cell `index` the active cell of the notebook shown in `panel`."""
    page.evaluate(
        """([id, index]) => {
            const w = window.jupyterapp.shell.widgets('main');
            for (const p of w) {
                if (p.id === id) {
                    window.jupyterapp.shell.activateById(id);
                    p.content.activeCellIndex = index;
                    p.content.deselectAll();
                    return;
                }
            }
            throw new Error('panel ' + id + ' is not open');
        }""",
        [panel.get_attribute("id"), index],
    )


def run_cell(page, panel, index: int, timeout: int = EXECUTE_TIMEOUT_MS):
    """Execute cell `index` and wait for it to finish; returns the cell's output Locator."""
    before = _prompt_text(panel, index)
    select_cell(page, panel, index)
    run_command(page, "notebook:run-cell")
    _wait_executed(panel, [index], {index: before}, timeout)
    return cell_output(panel, index)


def run_all(page, panel, timeout: int = EXECUTE_TIMEOUT_MS) -> None:
    """Run every cell and wait until every code cell shows a new execution count."""
    n = cells(panel).count()
    code = [i for i in range(n) if "jp-CodeCell" in (cell(panel, i).get_attribute("class") or "")]
    before = {i: _prompt_text(panel, i) for i in code}
    page.evaluate("(id) => window.jupyterapp.shell.activateById(id)", panel.get_attribute("id"))
    run_command(page, "notebook:run-all-cells")
    _wait_executed(panel, code, before, timeout)


def _wait_executed(panel, indices: list[int], before: dict[int, str], timeout: int) -> None:
    # "[*]:" while queued or running, "[N]:" once done; N always changes between executions.
    for i in indices:
        prompt = cell(panel, i).locator(".jp-InputArea-prompt").first
        prompt.page.wait_for_function(
            """([el, before]) => {
                const t = (el.textContent || '').trim();
                return /^\\[\\d+\\]:?$/.test(t) && t !== before;
            }""",
            arg=[prompt.element_handle(), before.get(i, "")], timeout=timeout)


def cell_output(panel, index: int):
    """The output area Locator of cell `index`."""
    return cell(panel, index).locator(".jp-OutputArea")


def cell_output_text(panel, index: int) -> str:
    return cell_output(panel, index).inner_text()


def wait_text(locator, text: str, timeout: int = EXECUTE_TIMEOUT_MS) -> None:
    """Wait until `text` is in the element's text (JupyterLab skips drawing cells out of view,
    so this reads textContent rather than waiting for visibility)."""
    locator.first.wait_for(state="attached", timeout=timeout)
    locator.page.wait_for_function("([el, text]) => el.textContent.includes(text)",
                                   arg=[locator.first.element_handle(), text], timeout=timeout)


def insert_code_cell(page, panel, source: str, *, below: int | None = None) -> int:
    """Add a code cell with `source` after cell `below` (default: last); returns its index."""
    return page.evaluate(
        """([id, source, below]) => {
            for (const p of window.jupyterapp.shell.widgets('main')) {
                if (p.id !== id) continue;
                const nb = p.content;
                const at = below === null ? nb.widgets.length : below + 1;
                nb.model.sharedModel.insertCell(at, {cell_type: 'code', source});
                nb.activeCellIndex = at;
                return at;
            }
            throw new Error('panel ' + id + ' is not open');
        }""",
        [panel.get_attribute("id"), source, below],
    )


def save_notebook(page, panel) -> None:
    page.evaluate(
        """async (id) => {
            for (const p of window.jupyterapp.shell.widgets('main')) {
                if (p.id === id) { await p.context.save(); return; }
            }
        }""",
        panel.get_attribute("id"),
    )


# -- theme --------------------------------------------------------------------------------------


def set_theme(page, theme: str) -> None:
    """Switch the lab theme: "light", "dark", or a theme's full name; waits until applied."""
    name = {"light": LIGHT_THEME, "dark": DARK_THEME}.get(theme, theme)
    run_command(page, "apputils:change-theme", {"theme": name})
    want_light = "false" if name == DARK_THEME else "true"
    # The body's data attributes change before the theme's stylesheet applies: also wait until
    # the theme's background colour variable resolves to a light (or dark) colour.
    page.wait_for_function(
        """([name, light]) => {
            const body = document.body;
            if (body.dataset.jpThemeName !== name || body.dataset.jpThemeLight !== light) {
                return false;
            }
            const probe = document.createElement('div');
            probe.style.color = 'var(--jp-layout-color1)';
            body.appendChild(probe);
            const rgb = (getComputedStyle(probe).color.match(/[\d.]+/g) || []).map(Number);
            probe.remove();
            if (rgb.length < 3) return false;
            const luminance = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255;
            return light === 'true' ? luminance > 0.5 : luminance < 0.5;
        }""",
        arg=[name, want_light], timeout=UI_TIMEOUT_MS)


# -- monitors -----------------------------------------------------------------------------------


_LOCAL_HOSTS = {"127.0.0.1"}
_NETWORK_SCHEMES = {"http", "https", "ws", "wss", "ftp"}


class RequestMonitor:
    """Records every network request the page (and its frames and workers) makes to a host
    other than 127.0.0.1, and aborts it so nothing leaves the machine.

    `data:`, `blob:` and `about:` URLs never touch the network and are not recorded.
    """

    # Only off-machine URLs are routed (matched in the browser driver, not in Python), so the
    # hundreds of lab asset requests are not slowed down.
    _OFF_MACHINE = re.compile(r"^(?:https?|wss?|ftp)://(?!127\.0\.0\.1(?:[:/]|$))", re.IGNORECASE)

    def __init__(self, context):
        self.external: list[str] = []
        context.on("request", self._on_request)
        context.route(self._OFF_MACHINE, self._abort)

    def _on_request(self, request) -> None:
        self._note(request.url)

    def _abort(self, route) -> None:
        self._note(route.request.url)
        route.abort()

    def _note(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in _NETWORK_SCHEMES:
            return
        if parts.hostname not in _LOCAL_HOSTS and url not in self.external:
            self.external.append(url)

    def assert_none_left(self) -> None:
        assert not self.external, f"requests left 127.0.0.1: {self.external}"


class ConsoleMonitor:
    """Collects console errors, uncaught page errors and dialogs (alert/confirm/prompt).

    Any dialog is dismissed and recorded: hostile output calling alert() must show up here.
    """

    def __init__(self, page):
        self.page = page
        self.dialogs: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("dialog", self._on_dialog)
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append((dialog.type, dialog.message))
        try:
            dialog.dismiss()
        except Exception:  # the page may already be closing
            pass

    def _on_console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def pwned_frames(self) -> list[str]:
        """URLs of the frames (page and iframes) where `window.__pwned` was set."""
        hit = []
        for frame in self.page.frames:
            try:
                if frame.evaluate("() => typeof window.__pwned !== 'undefined'"):
                    hit.append(frame.url)
            except Exception:  # a detached or cross-origin-sandboxed frame cannot be read
                continue
        return hit

    def assert_not_pwned(self) -> None:
        assert not self.dialogs, f"a dialog opened: {self.dialogs}"
        frames = self.pwned_frames()
        assert not frames, f"window.__pwned was set in: {frames}"


# -- screenshots --------------------------------------------------------------------------------


def artifact_name(nodeid: str, suffix: str = "") -> str:
    """A file-system-safe name from a pytest node id (`tests/browser/test_x.py::test_y[a]`)."""
    name = nodeid.split("tests/browser/")[-1].replace(".py::", "__").replace("::", "__")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    return f"{name}-{suffix}" if suffix else name


def screenshot(page, nodeid: str, suffix: str = "", *, full_page: bool = False) -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    path = ARTIFACTS_DIR / f"{artifact_name(nodeid, suffix)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
