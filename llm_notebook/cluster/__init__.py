"""Batch runs on a Dask cluster: `ddf.llm.map` / `ddf.llm.estimate` on dask DataFrames and Series.

The kernel that starts a run keeps the one log and cache: it reads them, sends only the rows
without an answer to the cluster's workers in tasks of a few rows each (their requests, never
a key), and logs the outcomes as the tasks come back. Pieces:
- `accessor.py`: the `ddf.llm` / `dds.llm` accessors (registered when dask.dataframe loads);
- `dispatch.py`: the kernel's side of a run: tasks out, outcomes back into the batch engine;
- `rows.py`: the task a worker runs: the project's one call pipeline over its rows, no log;
- `gate.py`: one gate for the whole cluster on the scheduler (concurrency, rpm/tpm, 429
  pauses, the run's budget), entered by every attempt of every worker;
- `secrets.py`: the keys, given to the workers by a worker plugin, outside the task graph.

Needs the `[dask]` extra (`pip install "llm-notebook[dask]"`).
"""
