"""Executors: where a suite's cases run (``inprocess``, ``local``, ``slurm``), on submitit.

- ``inprocess``: today's default, ``pacabench.runs.runner.run_suite`` in this process.
- ``local``: each case a submitit ``LocalExecutor`` job (one process per case). Timed cases
  (latency, memory, accuracy) run one at a time; FLOPs/params-only cases up to
  ``array_parallelism`` at once. The parent waits, merging rows as they arrive.
- ``slurm``: the cases as one job array (``map_array``); ``array_parallelism`` caps the tasks
  (GPUs) in use at once. ``--detach`` returns after submission; ``pacabench status`` and
  ``pacabench collect`` follow and merge the run later.
- ``debug`` (tests): submitit's ``DebugExecutor``, the same job function run in this process.

Each job re-creates its case from ``Case.to_dict()`` data, runs ``runner.run_case`` and writes
its row atomically to ``rows/<case-key stem>.json`` (``rowfiles``); jobs never share a file.
``collect`` merges the row files into ``rows.jsonl`` in suite order under the run's lock. The
jobs import pacabench from a copy of the package made at submission (``snapshot``).
"""

from ...spec.executor import EXECUTORS, ExecutorConfig, parse_executor_block

__all__ = ["EXECUTORS", "ExecutorConfig", "parse_executor_block"]
