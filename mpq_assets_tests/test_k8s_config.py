"""The Kubernetes code location loads: k8s_job_executor with our validated config, nvidia.com/gpu on the
pool="gpu" steps only, and dagster-k8s itself turns both into the step Job it would create."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance
from dagster._config import validate_config
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import create_execution_plan
from dagster._core.executor.init import InitExecutorContext
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster_k8s import k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

from mpq_assets.deploy import k8s

pytestmark = pytest.mark.fast  # the `make check` tier

ROOT = Path(__file__).resolve().parent.parent
VALUES = ROOT / "deploy" / "k8s" / "values.yaml"
ENV = {"MPQ_K8S_IMAGE": "registry.example.com/mpq:0.1.0", "MPQ_K8S_NAMESPACE": "mpq", "MPQ_K8S_PVC": "mpq-rwx",
       "MPQ_K8S_HOME": "/mnt/mpq", "MPQ_K8S_GPUS": "2",
       "MPQ_K8S_GPU_NODE_SELECTOR": "cloud.google.com/gke-accelerator=nvidia-l4",
       "MPQ_K8S_ENV": "MPQ_OFFLINE=1, MPQ_DEVICE=cuda"}
CPU_ONLY = ("dataset", "task_scores")
GPU = ("compressed", "quality", "reference_predictions", "predictions")


@pytest.fixture(scope="module")
def job():
    return k8s.k8s_definitions(env=ENV).resolve_implicit_global_asset_job_def()


@pytest.fixture(scope="module")
def plan(job):
    return create_execution_plan(job)


def _asset(step_key: str) -> str:
    return step_key.split("__")[-1]


def test_module_code_location_loads_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in ENV] + ["MPQ_K8S_SPOOL", "MPQ_K8S_MEMORY", "MPQ_K8S_CPU"]:
        monkeypatch.delenv(var, raising=False)
    module = importlib.reload(k8s)  # what `dagster api grpc -m mpq_assets.deploy.k8s` imports
    job = module.defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "mpq_k8s"
    config = module.k8s_executor_config()
    assert "job_image" not in config and "job_namespace" not in config  # the code location's image and namespace
    assert config["env_vars"] == ["MPQ_HOME=/data/mpq", "MPQ_SPOOL_DIR=/data/mpq/spool"]


def test_executor_is_k8s_job_executor_with_valid_config(job) -> None:
    config = k8s.k8s_executor_config(ENV)
    assert validate_config(k8s_job_executor.config_schema.config_type, config).success
    # the run config Dagster builds for a run of this job: our config through k8s_job_executor's schema
    resolved = ResolvedRunConfig.build(job, {})
    assert resolved.execution.execution_engine_name == "mpq_k8s"
    processed = resolved.execution.execution_engine_config
    assert processed["job_image"] == "registry.example.com/mpq:0.1.0" and processed["job_namespace"] == "mpq"
    assert processed["env_vars"] == ["MPQ_HOME=/mnt/mpq", "MPQ_SPOOL_DIR=/mnt/mpq/spool", "MPQ_OFFLINE=1",
                                     "MPQ_DEVICE=cuda"]
    assert processed["volume_mounts"] == [{"name": "mpq-data", "mount_path": "/mnt/mpq"}]
    assert processed["volumes"][0]["persistent_volume_claim"] == {"claim_name": "mpq-rwx"}
    assert job.executor_def.executor_creation_fn is k8s_job_executor.executor_creation_fn


def test_gpu_tag_on_gpu_assets_only(plan) -> None:
    seen = set()
    for step in plan.get_all_steps_in_topo_order():
        name = _asset(step.key)
        tag = step.tags.get(k8s.USER_DEFINED_K8S_CONFIG_KEY)
        if name in GPU:
            assert json.loads(tag)["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": 2}, step.key
        elif name in CPU_ONLY:
            assert tag is None, step.key
        seen.add(name)
    assert set(GPU) | set(CPU_ONLY) <= seen


def _step_job(job, plan, step_key: str):
    """The V1Job dagster-k8s's K8sStepHandler would create for ``step_key`` (its own merge and builder)."""
    executor = k8s_job_executor.executor_creation_fn(InitExecutorContext(
        job=InMemoryJob(job), executor_def=k8s_job_executor, instance=DagsterInstance.ephemeral(),
        executor_config={**ResolvedRunConfig.build(job, {}).execution.execution_engine_config,
                         "load_incluster_config": False, "kubeconfig_file": str(_kubeconfig())}))
    handler = executor._step_handler  # K8sStepHandler._get_container_context without a live run
    step_tags = plan.get_step_by_key(step_key).tags
    context = K8sContainerContext().merge(handler._executor_container_context).merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags)))
    return context, construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image=handler._executor_image), args=["dagster", "api", "execute_step"],
        job_name="dagster-step-test", user_defined_k8s_config=context.run_k8s_config, component="step_worker")


def _kubeconfig() -> Path:
    import tempfile

    path = Path(tempfile.gettempdir()) / "mpq-test-kubeconfig.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": "unused"}}],
    }))
    return path


def test_dagster_k8s_builds_gpu_and_cpu_step_jobs(job, plan) -> None:
    context, gpu_job = _step_job(job, plan, "demo_images__quality")
    assert context.namespace == "mpq"
    spec = gpu_job.to_dict()["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/mpq:0.1.0" and container["image_pull_policy"] == "IfNotPresent"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}  # executor requests, deep-merged
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MPQ_HOME"] == "/mnt/mpq" and env["MPQ_SPOOL_DIR"] == "/mnt/mpq/spool" and env["MPQ_OFFLINE"] == "1"
    assert [(m["name"], m["mount_path"]) for m in container["volume_mounts"]] == [("mpq-data", "/mnt/mpq")]
    assert [(v["name"], v["persistent_volume_claim"]["claim_name"]) for v in pod["volumes"]] == [("mpq-data",
                                                                                                  "mpq-rwx")]
    assert [(t["key"], t["operator"], t["effect"]) for t in pod["tolerations"]] == [
        ("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert pod["node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert spec["ttl_seconds_after_finished"] == 3600

    _, cpu_job = _step_job(job, plan, "demo_images__dataset")
    cpu = cpu_job.to_dict()["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in str(cpu["containers"][0]["resources"])
    assert not cpu["tolerations"] and not cpu["node_selector"]
    assert cpu["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}


def test_helm_values_match_the_code_location() -> None:
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "mpq_assets.deploy.k8s"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    config = k8s.k8s_executor_config(env)  # what the code-location pod builds from its environment
    assert validate_config(k8s_job_executor.config_schema.config_type, config).success
    # steps and the merging code location see the same MPQ_HOME and spool on the same claim
    assert f"MPQ_HOME={env['MPQ_HOME']}" in config["env_vars"]
    assert f"MPQ_SPOOL_DIR={env['MPQ_SPOOL_DIR']}" in config["env_vars"]
    (mount,) = deployment["volumeMounts"]
    assert config["volume_mounts"] == [{"name": mount["name"], "mount_path": mount["mountPath"]}]
    claim = deployment["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert config["volumes"][0]["persistent_volume_claim"]["claim_name"] == claim
    pvc = yaml.safe_load((VALUES.parent / "pvc.yaml").read_text(encoding="utf-8"))
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_documented_gpu_tag_is_the_one_assets_carry() -> None:
    text = (ROOT / "docs" / "scale_out.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- tested: k8s-gpu-tag -->\s*```yaml\n(.*?)```", text, re.S)
    assert match, "docs/scale_out.md lost its k8s-gpu-tag block"
    assert yaml.safe_load(match.group(1)) == k8s.gpu_op_tags({})
    match = re.search(r"<!-- tested: k8s-executor -->\s*```yaml\n(.*?)```", text, re.S)
    assert match, "docs/scale_out.md lost its k8s-executor block"
    assert yaml.safe_load(match.group(1))["execution"]["config"] == k8s.k8s_executor_config({})
