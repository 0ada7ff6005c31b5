"""Dask: run each partition's steps on a Dask cluster (LocalCluster, an existing scheduler, SLURM/PBS jobs).

``dask_executor`` is dagster-dask's executor (same name ``dask``, same config schema) with two fixes:

- dagster-dask names each Dask task ``<job>.<step>``, so two runs of the same job on one cluster (two
  partitions launched together) share task keys and Dask hands the second run the first run's result
  without running it (dagster-io/dagster#21418, still so in dagster-dask 0.29.27). Here keys carry the run id.
- dask >= 2025 walks tuple arguments of ``Client.submit`` looking for futures; a ``DagsterRun`` is a
  tuple holding ``@record`` values that refuse iteration, so every run of an asset with a ``pool`` failed
  before a step started ("Iteration is not allowed on `@record` RunOpConcurrency"). Here the step's
  arguments travel in one opaque object; only the dependency futures are visible to Dask.

The config builders below return the executor config the docs show (docs/scale_out.md).

Workers need the same ``MPQ_*`` environment as the code location (``MPQ_HOME`` on a shared disk). Where
the workers do not share a disk DuckDB can lock, also set ``MPQ_SPOOL_DIR`` and run the spool merge.

No ``from __future__ import annotations`` here: Dagster inspects the executor function.
"""

import importlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dask.distributed
from dagster import Definitions, ExecutorDefinition, executor, multiple_process_executor_requirements
from dagster import _check as check
from dagster._core.errors import raise_execution_interrupts
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._utils import iterate_with_context
from dagster_dask.executor import (
    DASK_RESOURCE_REQUIREMENTS_KEY,
    DaskExecutor,
    get_dask_resource_requirements,
    query_on_dask_worker,
)
from dagster_dask.executor import dask_executor as upstream_dask_executor

from mpq_assets.defs.resources import MpqResource
from mpq_assets.experiments import Experiment

# cluster type -> (module, class) the executor starts; "existing" connects to a running scheduler instead
CLUSTER_CLASSES = {
    "local": ("dask.distributed", "LocalCluster"),
    "yarn": ("dask_yarn", "YarnCluster"),
    "ssh": ("dask.distributed", "SSHCluster"),
    "pbs": ("dask_jobqueue", "PBSCluster"),
    "moab": ("dask_jobqueue", "MoabCluster"),
    "sge": ("dask_jobqueue", "SGECluster"),
    "lsf": ("dask_jobqueue", "LSFCluster"),
    "slurm": ("dask_jobqueue", "SLURMCluster"),
    "oar": ("dask_jobqueue", "OARCluster"),
    "kube": ("dask_kubernetes", "KubeCluster"),
}


class StepArgs:
    """The arguments of ``query_on_dask_worker`` after the dependencies, opaque to Dask's argument walk."""

    def __init__(self, *args: Any) -> None:
        self.args = args


def run_step_on_worker(dependencies: list, step_args: StepArgs) -> Sequence[DagsterEvent]:
    """What each Dask task runs: dagster-dask's step execution (``dependencies`` only order the tasks)."""
    return query_on_dask_worker(dependencies, *step_args.args)


# Steps start worker processes of their own (parallel encodes of the CPU codecs, ``MPQ_WORKERS``), and a
# daemonic process may not have children: Dask's workers are daemonic unless configured otherwise.
WORKER_CONFIG = {"distributed.worker.daemon": False}
WORKER_ENV = "DASK_DISTRIBUTED__WORKER__DAEMON=False"  # the same for `dask worker` started from a shell


def dask_task_key(job_name: str, run_id: str, step_key: str) -> str:
    """One Dask key per (run, step): concurrent runs of one job never share a task."""
    return f"{job_name}.{run_id}.{step_key}"


class RunScopedDaskExecutor(DaskExecutor):
    """dagster-dask's ``DaskExecutor`` with run-scoped task keys and opaque step arguments (the rest as
    upstream 0.29.27)."""

    def make_cluster(self, job_name: str) -> Any:
        """The cluster to submit to: a scheduler address (``existing``) or a started cluster object."""
        if self.cluster_type == "existing":
            return self.cluster_configuration["address"]
        if self.cluster_type not in CLUSTER_CLASSES:
            raise ValueError(f"unknown Dask cluster type {self.cluster_type!r}; one of existing, "
                             f"{', '.join(CLUSTER_CLASSES)}")
        module, cls = CLUSTER_CLASSES[self.cluster_type]
        with dask.config.set(WORKER_CONFIG):  # read when a local nanny starts its worker process
            return getattr(importlib.import_module(module), cls)(**self.build_dict(job_name))

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan):
        check.inst_param(plan_context, "plan_context", PlanOrchestrationContext)
        check.inst_param(execution_plan, "execution_plan", ExecutionPlan)
        check.invariant(plan_context.instance.is_persistent, "Dask execution requires a persistent DagsterInstance")
        job_name = plan_context.job_name
        run_id = plan_context.dagster_run.run_id
        instance = plan_context.instance
        cluster = self.make_cluster(job_name)
        with dask.distributed.Client(cluster) as client:
            futures = []
            by_step = {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    # Dask orders the futures: each waits for the futures of the steps it depends on
                    dependencies = [by_step[key] for step_input in step.step_inputs
                                    for key in step_input.dependency_keys]
                    step_args = StepArgs(plan_context.reconstructable_job, plan_context.dagster_run,
                                         plan_context.run_config, [step.key], instance.get_ref(),
                                         execution_plan.known_state)
                    future = client.submit(
                        run_step_on_worker,
                        dependencies,
                        step_args,
                        key=dask_task_key(job_name, run_id, step.key),
                        resources=get_dask_resource_requirements(step.tags),
                    )
                    futures.append(future)
                    by_step[step.key] = future
            results = dask.distributed.as_completed(futures, with_results=True)
            for _future, events in iterate_with_context(raise_execution_interrupts, results):
                for event in events:
                    yield check.inst(event, DagsterEvent)


@executor(name="dask", config_schema=upstream_dask_executor.config_schema,
          requirements=multiple_process_executor_requirements())
def dask_executor(init_context):
    """dagster-dask's executor with run-scoped task keys. Config: ``{"cluster": {<type>: {...}}}``, see
    :func:`local_cluster_config`, :func:`existing_cluster_config`, :func:`slurm_cluster_config`."""
    ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
    return RunScopedDaskExecutor(cluster_type, cluster_configuration)


# -- config builders (what docs/scale_out.md shows; the tests load each) ---------------------------------------
def existing_cluster_config(address: str) -> dict[str, Any]:
    """A scheduler that is already running (``dask scheduler`` + ``dask worker``, or a jobqueue cluster
    started once for a whole backfill): every run submits its steps there."""
    return {"cluster": {"existing": {"address": address}}}


def local_cluster_config(n_workers: int = 2, threads_per_worker: int = 1, **kwargs: Any) -> dict[str, Any]:
    """A ``distributed.LocalCluster`` per run on this machine (one thread per worker: Dagster steps are not
    thread-safe)."""
    return {"cluster": {"local": {"n_workers": n_workers, "threads_per_worker": threads_per_worker, **kwargs}}}


def _prologue(mpq_home: str, venv: str | None, spool_dir: str | None, extra: Sequence[str]) -> list[str]:
    lines = [f"source {venv}/bin/activate"] if venv else []
    lines += [f"export {WORKER_ENV}", f"export MPQ_HOME={mpq_home}"]
    if spool_dir:
        lines.append(f"export MPQ_SPOOL_DIR={spool_dir}")
    return [*lines, *extra]


def _gpu_worker_args(gpus_per_job: int) -> list[str]:
    # a worker owning GPUs advertises them as a Dask resource; pool="gpu" steps ask for it (dask_definitions)
    return ["--resources", f"GPU={gpus_per_job}"] if gpus_per_job else []


def slurm_cluster_config(*, queue: str, mpq_home: str, account: str | None = None, jobs: int = 2,
                         job_cpu: int = 8, memory: str = "32GB", walltime: str = "04:00:00", gpus_per_job: int = 0,
                         venv: str | None = None, spool_dir: str | None = None,
                         job_extra_directives: Sequence[str] = (), job_script_prologue: Sequence[str] = (),
                         **kwargs: Any) -> dict[str, Any]:
    """``dask_jobqueue.SLURMCluster``: ``jobs`` batch jobs, one Dask worker each, one step at a time per worker
    (``cores=1``, Dagster steps are not thread-safe) while ``job_cpu`` CPUs are booked for the models' own
    threads. ``gpus_per_job`` adds ``--gres=gpu:N`` and the worker resource ``GPU=N``."""
    directives = [*([f"--gres=gpu:{gpus_per_job}"] if gpus_per_job else []), *job_extra_directives]
    config = {
        "queue": queue, "cores": 1, "processes": 1, "job_cpu": job_cpu, "memory": memory, "walltime": walltime,
        "n_workers": jobs, "job_extra_directives": directives,
        "job_script_prologue": _prologue(mpq_home, venv, spool_dir, job_script_prologue),
        "worker_extra_args": _gpu_worker_args(gpus_per_job), **kwargs,
    }
    if account:
        config["account"] = account
    return {"cluster": {"slurm": config}}


def pbs_cluster_config(*, queue: str, mpq_home: str, account: str | None = None, jobs: int = 2, ncpus: int = 8,
                       memory: str = "32GB", walltime: str = "04:00:00", gpus_per_job: int = 0,
                       venv: str | None = None, spool_dir: str | None = None,
                       job_script_prologue: Sequence[str] = (), **kwargs: Any) -> dict[str, Any]:
    """``dask_jobqueue.PBSCluster`` (PBS Pro select syntax): like :func:`slurm_cluster_config`, the booking
    is ``select=1:ncpus=N:ngpus=G:mem=M`` and each job runs one single-threaded worker."""
    spec = f"select=1:ncpus={ncpus}" + (f":ngpus={gpus_per_job}" if gpus_per_job else "") + f":mem={memory}"
    config = {
        "queue": queue, "cores": 1, "processes": 1, "memory": memory, "walltime": walltime, "resource_spec": spec,
        "n_workers": jobs, "job_script_prologue": _prologue(mpq_home, venv, spool_dir, job_script_prologue),
        "worker_extra_args": _gpu_worker_args(gpus_per_job), **kwargs,
    }
    if account:
        config["account"] = account
    return {"cluster": {"pbs": config}}


def start_cluster(config: Mapping[str, Any], name: str = "mpq") -> Any:
    """Start the cluster a config describes and leave it running (e.g. one SLURM cluster for a whole backfill,
    used by every run through :func:`existing_cluster_config` with its ``scheduler_address``)."""
    ((cluster_type, cluster_configuration),) = config["cluster"].items()
    if cluster_type == "existing":
        raise ValueError("an existing cluster is already running")
    return RunScopedDaskExecutor(cluster_type, dict(cluster_configuration)).make_cluster(name)


def gpu_dask_tags(gpus: int = 1) -> dict[str, str]:
    """Op tags that make dagster-dask submit a step with ``resources={"GPU": gpus}``: it runs only on workers
    started with ``--resources GPU=...`` (the jobqueue builders add that when ``gpus_per_job`` is set)."""
    return {DASK_RESOURCE_REQUIREMENTS_KEY: json.dumps({"GPU": gpus})}


def dask_config_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``MPQ_DASK_SCHEDULER`` set: that scheduler (:func:`existing_cluster_config`); else a LocalCluster of
    ``MPQ_DASK_WORKERS`` (default 2) single-threaded workers per run."""
    e = os.environ if env is None else env
    if e.get("MPQ_DASK_SCHEDULER"):
        return existing_cluster_config(e["MPQ_DASK_SCHEDULER"])
    return local_cluster_config(n_workers=int(e.get("MPQ_DASK_WORKERS") or 2))


def dask_executor_def(config: Mapping[str, Any]) -> ExecutorDefinition:
    """``dask_executor`` with ``config`` baked in (validated when a run starts)."""
    return dask_executor.configured(dict(config))


def dask_definitions(config: Mapping[str, Any], experiments: Iterable[Experiment] | None = None,
                     mpq: MpqResource | None = None, *, gpus_per_gpu_step: int = 0) -> Definitions:
    """The code location with every job on Dask. ``gpus_per_gpu_step``: ``pool="gpu"`` assets only run on
    workers that advertise ``GPU`` resources (leave 0 when the cluster has no GPU workers)."""
    from mpq_assets.definitions import build_definitions

    return build_definitions(experiments, mpq, executor=dask_executor_def(config),
                             gpu_op_tags=gpu_dask_tags(gpus_per_gpu_step) if gpus_per_gpu_step else None)
