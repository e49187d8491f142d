"""Keys reach the workers beside the task graph, never in it.

A task's arguments are pickled into the graph, shown by the dashboard and may be logged, so a
run's tasks carry its route and options with every credential taken out, plus an opaque id.
The credentials go to the workers in a WorkerPlugin: the scheduler keeps it (pickled) to give
to every worker that joins later, a restarted one too, and a task looks its credentials up
by id on the worker it runs on. The plugin registers each key with the worker's redaction,
so an error body that echoes a key is redacted there as it is in the kernel. The plugin is
unregistered when the kernel's last run that needs it ends.
"""

from __future__ import annotations

import dataclasses
import hashlib

from distributed.diagnostics.plugin import WorkerPlugin

from .. import options as call_options
from .. import redact

PLUGIN_NAME = "llm-notebook-keys"
# Headers may carry an Authorization: they travel with the keys, not in the graph.
_HEADER_OPTIONS = frozenset({"headers", "extra_headers", "default_headers"})


class ProviderKeys(WorkerPlugin):
    """{credentials id: (the route's api_key, credential options)} for the kernel's runs."""

    name = PLUGIN_NAME

    def __init__(self, secrets: dict):
        self._secrets = dict(secrets)

    def setup(self, worker) -> None:
        for api_key, options in self._secrets.values():
            redact.register(api_key)
            redact.register_options(options)

    def lookup(self, secret_id: str | None) -> tuple:
        return self._secrets.get(secret_id, (None, {}))

    def __repr__(self) -> str:       # never the keys, whoever prints it
        return f"<ProviderKeys: {len(self._secrets)} credential set(s)>"


def split(route, options: dict) -> tuple:
    """(the route and options without credentials, their id, the credentials)."""
    secret_options = {k: v for k, v in options.items()
                      if call_options.is_credential(k) or k in _HEADER_OPTIONS}
    plain = {k: v for k, v in options.items() if k not in secret_options}
    secret = (route.api_key, secret_options)
    if route.api_key is None and not secret_options:
        return dataclasses.replace(route, api_key=None), plain, None, None
    digest = hashlib.sha256(repr((route.model, route.base_url, route.api_key,
                                  sorted(secret_options.items()))).encode()).hexdigest()[:16]
    return dataclasses.replace(route, api_key=None), plain, digest, secret


class KeyRing:
    """The kernel's side: the credential sets its running runs gave one client's workers, as
    one plugin (registering again replaces it). When the last of them ends, the plugin is
    unregistered: keys stay on a cluster only while a run needs them."""

    def __init__(self):
        self._by_client: dict[tuple, dict] = {}     # client -> {secret id: [secret, runs]}

    def give(self, client, secret_id: str | None, secret) -> None:
        if secret_id is None:
            return
        held = self._by_client.setdefault(_client_key(client), {})
        if secret_id in held:
            held[secret_id][1] += 1
            return
        held[secret_id] = [secret, 1]
        self._register(client, held)

    def take_back(self, client, secret_id: str | None) -> None:
        held = self._by_client.get(_client_key(client))
        if secret_id is None or not held or secret_id not in held:
            return
        held[secret_id][1] -= 1
        if held[secret_id][1] > 0:
            return
        del held[secret_id]
        if held:
            self._register(client, held)
        else:
            del self._by_client[_client_key(client)]
            client.unregister_worker_plugin(PLUGIN_NAME)

    @staticmethod
    def _register(client, held: dict) -> None:
        client.register_plugin(ProviderKeys({k: v[0] for k, v in held.items()}),
                               name=PLUGIN_NAME)


def _client_key(client) -> tuple:
    return client.id, client.scheduler.address


KEYS = KeyRing()


def on_worker(worker, secret_id: str | None) -> tuple:
    if secret_id is None:
        return None, {}
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None:
        return None, {}
    return plugin.lookup(secret_id)
