"""A tiny experiment for the Dask executor test; Dask workers rebuild the job from this module.

No ``from __future__ import annotations``: Dagster reconstructs the job by calling ``tiny_job``.
"""

import warnings

from dagster import AssetKey, BetaWarning, Definitions, JobDefinition, define_asset_job

from mpq_assets.defs.resources import MpqResource
from mpq_assets.deploy.dask import dask_definitions, existing_cluster_config
from mpq_assets.experiments import Experiment

EXPERIMENT = "dask_tiny"
warnings.filterwarnings("ignore", category=BetaWarning)  # backfill_policy, in each worker's log otherwise


def tiny_experiment(images: str) -> Experiment:
    return Experiment(EXPERIMENT, "image", "image_folder", {"root": images},
                      description="three 48 px images for the Dask test", quality_metrics=("psnr",))


def tiny_job(address: str, home: str, images: str, spool_dir: str = "", part: str = "partitions") -> JobDefinition:
    """``part="dataset"``: the manifest; ``"partitions"``: compressed and quality of one partition per run.
    Every step is submitted to the Dask scheduler at ``address``."""
    defs = dask_definitions(existing_cluster_config(address), [tiny_experiment(images)],
                            MpqResource(home=home, spool_dir=spool_dir))
    names = ["dataset"] if part == "dataset" else ["compressed", "quality"]
    job = define_asset_job(f"{EXPERIMENT}_{part}", selection=[AssetKey([EXPERIMENT, n]) for n in names])
    return Definitions.merge(defs, Definitions(jobs=[job])).resolve_job_def(job.name)
