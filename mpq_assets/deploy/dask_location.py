"""Code location with every run on Dask: ``dagster dev -m mpq_assets.deploy.dask_location``.

``MPQ_DASK_SCHEDULER=tcp://host:8786``: submit to that scheduler (a ``dask scheduler``, or a SLURM/PBS
cluster started with ``mpq_assets.deploy.dask.start_cluster``); unset: a LocalCluster of
``MPQ_DASK_WORKERS`` (2) workers per run. ``MPQ_DASK_GPUS`` (0): ``GPU`` resources each ``pool="gpu"`` step
asks of its worker. See docs/scale_out.md.
"""

import os

from mpq_assets.deploy.dask import dask_config_from_env, dask_definitions

defs = dask_definitions(dask_config_from_env(), gpus_per_gpu_step=int(os.environ.get("MPQ_DASK_GPUS") or 0))
