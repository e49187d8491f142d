"""The call pipeline: how every face's request becomes an answer and a log row.

- `attempt.py`: one attempt over a provider's chunks (gap timeout, time to first token,
  partial text, incomplete answers);
- `executor.py`: retries, the deadline, budget holds, structured-output negotiation
  (`structured.py`) and pricing, ending in an `Outcome`;
- `outcome.py`: an Outcome and the log row it makes (`Response.from_row` reads it back);
- `single.py`: one call from Session, Conversation, widgets and %%llm to the log.
Batch runs (llm_notebook/batch/engine.py) run each row through the same executor.
"""
