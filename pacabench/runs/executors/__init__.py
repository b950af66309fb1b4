"""Executors: where a suite's cases run (``inprocess``, ``local``, ``slurm``, ``debug``), on submitit.

``kinds``: one class per kind (what each does, and the ``Executor`` interface ``pacabench.run``
calls). ``job``: the function each submitted job runs; ``rowfiles``: its row file
``rows/<case-key stem>.json`` (jobs never share a file); ``collect``: merging the row files into
``rows.jsonl`` in suite order under the run's lock, and ``status``; ``jobstate``: jobs.json and
how a job stands without accounting; ``snapshot``: the copy of the package the jobs import.
"""

from ...spec.executor import EXECUTORS, ExecutorConfig, parse_executor_block

__all__ = ["EXECUTORS", "ExecutorConfig", "parse_executor_block"]
