"""The function each job runs (pickled by submitit, imported from the snapshot on the node)."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

__all__ = ["run_job", "provenance"]


def _gpu() -> tuple[str | None, str | None]:
    import torch

    if not torch.cuda.is_available():
        return None, None
    props = torch.cuda.get_device_properties(0)
    uuid = getattr(props, "uuid", None)
    return props.name, (f"GPU-{uuid}" if uuid is not None else None)


def provenance(executor: str) -> dict[str, Any]:
    """Where this process runs: executor, SLURM job id and array index, host, GPU, code commit."""
    from .snapshot import snapshot_commit

    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    job_id = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")
    gpu_name, gpu_uuid = _gpu()
    return {
        "executor": executor,
        "slurm_job_id": job_id,
        "slurm_array_index": int(task) if task and task.isdigit() else None,
        "hostname": socket.gethostname(),
        "gpu_name": gpu_name,
        "gpu_uuid": gpu_uuid,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "code_commit": snapshot_commit(),
    }


def _rank() -> int:
    """This task's rank. A job of several tasks (``gpus_per_node`` > 1: one task per GPU) exports
    what torchrun would (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK), so an evaluation runs
    its torch.distributed path (``eval.distributed``) and reduces its metrics exactly as there."""
    import submitit
    from submitit.helpers import TorchDistributedEnvironment

    try:
        env = submitit.JobEnvironment()
        if env.num_tasks <= 1:
            return 0
    except RuntimeError:  # not in a submitit job
        return 0
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    print(f"pacabench job: rank {env.global_rank} of {env.num_tasks}", flush=True)  # into the job's log
    return env.global_rank


def run_job(
    case_data: dict[str, Any], run_path: str, executor: str, run_id: str, base: dict[str, Any] | None = None
) -> str:
    """Run one case (``runner.run_case``) and write its row to ``rows/<key>.json``; returns the
    row's status. A failing model is a row, not an exception (``run_case`` never raises).
    ``base``: the case's finished row, when the job measures metrics a changed suite added (the
    case's ``metrics``): the row written is ``base`` with them merged in (``runner.merge_refill``).
    ``job_start``/``job_end`` span the whole job (imports included): what status's ETA uses."""
    start = time.time()
    from ...spec.suite import Case
    from ..folder import RunDir
    from ..runner import merge_refill, run_case, with_artifacts
    from .rowfiles import row_file, write_row_file

    delay = float(os.environ.get("PACABENCH_JOB_DELAY_S", "0") or 0)  # tests: a planted slow job
    case = Case.from_dict(case_data)
    rank = _rank()
    if rank and case.task == "cost":
        return "rank-idle"  # a cost case runs on one process; the other tasks have nothing to do
    if delay:
        time.sleep(delay)
    row = run_case(with_artifacts(case, RunDir(run_path)))
    if rank:
        return row.status  # rank 0 alone writes the row (every rank holds the reduced metrics)
    if base is not None:
        d = merge_refill(case, base, row)
    else:
        row.run_id = run_id
        d = row.to_dict() | provenance(executor) | {"job_start": start, "job_end": time.time()}
    write_row_file(row_file(run_path, case.key), d)
    return row.status
