"""Batch runs: one prompt over many rows, fast, paced, resumable, with live progress.

`df.llm.map(...)` (accessor.py), `session.batch/abatch(...)` and `session.jobs()/job(id)` are the
faces; settings.py lists what a run takes, api.py prepares and shapes runs, engine.py runs them
(each row through the call executor, llm_notebook/call), pacing.py paces them, store.py holds
their SQL, progress.py shows them. Nothing here is imported by `import llm_notebook`.
"""
