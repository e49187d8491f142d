"""The SQL of conversations (table `conversations`): a mixin of `Log`. A conversation row holds
a name, the model and system prompt, and its head: the latest call of the branch on screen."""

from __future__ import annotations

import time


class ConversationStore:
    def create_conversation(self, conv_id: str, *, name: str | None = None,
                            head_id: int | None = None, forked_from: int | None = None,
                            model: str | None = None, system: str | None = None) -> None:
        with self.write():
            self.db["conversations"].insert(
                {"id": conv_id, "name": name, "created": time.time(), "head_id": head_id,
                 "forked_from": forked_from, "model": model, "system": system})

    def conversation(self, *, conv_id: str | None = None, name: str | None = None) -> dict | None:
        if conv_id is not None:
            rows = self.rows_where("conversations", "id = ?", [conv_id])
        else:
            rows = self.rows_where("conversations", "name = ?", [name])
        return rows[0] if rows else None

    def set_head(self, conv_id: str, head_id: int | None) -> None:
        with self.write() as db:
            db.execute("UPDATE conversations SET head_id = ? WHERE id = ?", (head_id, conv_id))

    def conversations(self, limit: int = 100) -> list[dict]:
        return [dict(r) for r in self.read(
            "SELECT c.*, (SELECT count(*) FROM calls WHERE conversation_id = c.id) AS calls "
            "FROM conversations c ORDER BY created DESC LIMIT ?", (limit,))]
