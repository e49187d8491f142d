"""Prompt templates in the log (table ``templates``, migration m020_templates): immutable,
numbered versions of a name (versioned_store.py). Rows come out with ``options``/``defaults``
decoded to dicts and ``tags`` to a list.
"""

from __future__ import annotations

from .versioned_store import VersionedTable

# The fields that make a version's content (what `skip_unchanged` compares).
CONTENT = ("prompt", "system", "model", "options", "defaults", "tags")

_TABLE = VersionedTable("templates", ("prompt", "system", "model", "options", "defaults", "tags"),
                        json_fields={"options": {}, "defaults": {}, "tags": []}, content=CONTENT)

insert_versions = _TABLE.insert_versions
get_version = _TABLE.get_version
versions = _TABLE.versions
version_numbers = _TABLE.version_numbers
latest_all = _TABLE.latest_all
names = _TABLE.names
delete = _TABLE.delete
