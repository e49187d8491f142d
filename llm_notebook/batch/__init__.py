"""Batch runs: one prompt over many rows, fast, paced, resumable, with live progress.

`df.llm.map(...)` (accessor.py), `session.batch/abatch(...)` and `session.jobs()/job(id)` are the
faces; settings.py lists what a run takes, api.py prepares and shapes runs, engine.py runs them
(each row through the call executor, llm_notebook/call) with rows a chunk at a time (feed.py),
pacing.py paces them per model, background.py queues background jobs, provider_batch.py sends
rows through a provider's Batch API, jobs.py is the Job users hold, export.py and files.py write
and read tables, store.py holds their SQL, progress.py shows them. Nothing here is imported by
`import llm_notebook`.
"""
