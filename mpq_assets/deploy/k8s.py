"""Kubernetes: every step in its own pod (``dagster_k8s.k8s_job_executor``), GPUs for ``pool="gpu"`` assets.

Use it as the code location of the Dagster Helm chart's user deployment
(``dagsterApiGrpcArgs: ["-m", "mpq_assets.deploy.k8s"]``, see ``deploy/k8s/values.yaml`` and
docs/scale_out.md). The settings come from environment variables of the code-location pod:

| variable | default | meaning |
|---|---|---|
| ``MPQ_K8S_IMAGE`` | unset: the code location's own image | image of the step pods |
| ``MPQ_K8S_IMAGE_PULL_POLICY`` | ``IfNotPresent`` | |
| ``MPQ_K8S_NAMESPACE`` | unset: the run's namespace | namespace of the step jobs |
| ``MPQ_K8S_PVC`` | ``mpq-data`` | ReadWriteMany claim holding ``MPQ_HOME`` (artifacts, spool, DuckDB) |
| ``MPQ_K8S_HOME`` | ``/data/mpq`` | where that claim is mounted; ``MPQ_HOME`` of every step |
| ``MPQ_K8S_SPOOL`` | ``1`` | spool mode (``MPQ_SPOOL_DIR=$MPQ_K8S_HOME/spool``): no step pod writes DuckDB |
| ``MPQ_K8S_CPU`` / ``MPQ_K8S_MEMORY`` | ``1`` / ``4Gi`` | requests of every step pod |
| ``MPQ_K8S_GPUS`` | ``1`` | ``nvidia.com/gpu`` limit of each ``pool="gpu"`` step |
| ``MPQ_K8S_GPU_NODE_SELECTOR`` | unset | ``key=value[,key=value]`` node selector for GPU steps |
| ``MPQ_K8S_MAX_CONCURRENT`` | ``16`` | step pods at once per run |
| ``MPQ_K8S_ENV`` | unset | more ``KEY=VALUE`` pairs (comma-separated) for the step pods, e.g. ``MPQ_OFFLINE=1`` |

No ``from __future__ import annotations`` here: this module builds Dagster definitions.
"""

import os
from collections.abc import Iterable, Mapping
from typing import Any

from dagster import Definitions, ExecutorDefinition
from dagster_k8s import k8s_job_executor

from mpq_assets.defs.resources import MpqResource
from mpq_assets.experiments import Experiment

USER_DEFINED_K8S_CONFIG_KEY = "dagster-k8s/config"  # the op tag dagster-k8s reads (dagster_k8s.job)
GPU_RESOURCE = "nvidia.com/gpu"
VOLUME = "mpq-data"
_TRUE = {"1", "true", "yes", "on"}


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {part!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def step_env_vars(env: Mapping[str, str] | None = None) -> list[str]:
    """``KEY=VALUE`` strings for every step pod: where results go and whether they are spooled."""
    e = _env(env)
    home = e.get("MPQ_K8S_HOME", "/data/mpq")
    out = {"MPQ_HOME": home}
    if e.get("MPQ_K8S_SPOOL", "1").strip().lower() in _TRUE:
        out["MPQ_SPOOL_DIR"] = f"{home}/spool"
    out.update(_pairs(e.get("MPQ_K8S_ENV", "")))
    return [f"{k}={v}" for k, v in out.items()]


def k8s_executor_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Config of ``k8s_job_executor`` (validated against its schema by the tests)."""
    e = _env(env)
    config: dict[str, Any] = {
        "image_pull_policy": e.get("MPQ_K8S_IMAGE_PULL_POLICY", "IfNotPresent"),
        "env_vars": step_env_vars(e),
        "volumes": [{"name": VOLUME, "persistent_volume_claim": {"claim_name": e.get("MPQ_K8S_PVC", "mpq-data")}}],
        "volume_mounts": [{"name": VOLUME, "mount_path": e.get("MPQ_K8S_HOME", "/data/mpq")}],
        "resources": {"requests": {"cpu": e.get("MPQ_K8S_CPU", "1"), "memory": e.get("MPQ_K8S_MEMORY", "4Gi")}},
        "max_concurrent": int(e.get("MPQ_K8S_MAX_CONCURRENT", "16")),
        # finished step jobs go away after an hour; the run's logs stay in Dagster
        "step_k8s_config": {"job_spec_config": {"ttl_seconds_after_finished": 3600}},
    }
    if e.get("MPQ_K8S_IMAGE"):
        config["job_image"] = e["MPQ_K8S_IMAGE"]
    if e.get("MPQ_K8S_NAMESPACE"):
        config["job_namespace"] = e["MPQ_K8S_NAMESPACE"]
    return config


def gpu_op_tags(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``dagster-k8s/config`` for ``pool="gpu"`` assets: an ``nvidia.com/gpu`` limit (requests default to
    limits for extended resources), the usual GPU-node taint tolerated, an optional node selector."""
    e = _env(env)
    pod_spec: dict[str, Any] = {
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    }
    selector = dict(_pairs(e.get("MPQ_K8S_GPU_NODE_SELECTOR", "")))
    if selector:
        pod_spec["node_selector"] = selector
    return {USER_DEFINED_K8S_CONFIG_KEY: {
        "container_config": {"resources": {"limits": {GPU_RESOURCE: int(e.get("MPQ_K8S_GPUS", "1"))}}},
        "pod_spec_config": pod_spec,
    }}


def k8s_executor_def(env: Mapping[str, str] | None = None) -> ExecutorDefinition:
    return k8s_job_executor.configured(k8s_executor_config(env), name="mpq_k8s")


def k8s_definitions(experiments: Iterable[Experiment] | None = None, mpq: MpqResource | None = None,
                    env: Mapping[str, str] | None = None) -> Definitions:
    """The code location with the Kubernetes executor and GPU tags (settings from ``env``/the environment)."""
    from mpq_assets.definitions import build_definitions

    return build_definitions(experiments, mpq, executor=k8s_executor_def(env), gpu_op_tags=gpu_op_tags(env))


defs = k8s_definitions()
