"""Batch runs: one prompt over many rows, fast, paced, resumable, with live progress.

`df.llm.map(...)` (accessor.py), `session.batch/abatch(...)` and `session.jobs()/job(id)` are the
faces; api.py prepares and shapes runs, engine.py runs them, pacing.py paces them, store.py holds
their SQL, progress.py shows them. Nothing here is imported by `import llm_notebook`.
"""
