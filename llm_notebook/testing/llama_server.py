"""llama-cpp-python's own OpenAI-compatible server, serving the embedded SmolLM2 file: a real
third-party server (not ours) for tests of the lean HTTP path.

    with LlamaServer() as server:            # needs `pip install "llama-cpp-python[server]"`
        session.add_endpoint("ls", server.url)
        session.ask("Hi", model="ls/smollm2")

It starts in about a second (`python -m llama_cpp.server --model FILE --model_alias NAME`) on a
free port of 127.0.0.1, with one thread (the machine's cores are for the code under test), and
is ready once `GET /v1/models` answers.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

START_TIMEOUT_S = 90.0


class LlamaServer:
    def __init__(self, alias: str = "smollm2", *, threads: int = 1):
        self.alias = alias
        self.threads = threads
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._output = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LlamaServer":
        from ..providers import local

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._output = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", local.model_path(),
             "--model_alias", self.alias, "--host", "127.0.0.1", "--port", str(self.port),
             "--n_ctx", "2048", "--n_threads", str(self.threads),
             "--n_threads_batch", str(self.threads)],
            stdout=self._output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited ({self._proc.returncode}): "
                                   f"{self._tail()}")
            if self._models() is not None:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {START_TIMEOUT_S:g} s")

    def _models(self) -> list | None:
        try:
            with urllib.request.urlopen(self.url + "/models", timeout=2) as resp:
                return json.loads(resp.read()).get("data")
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def _tail(self) -> str:
        self._output.seek(0)
        return self._output.read()[-2000:].decode("utf-8", "replace")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
