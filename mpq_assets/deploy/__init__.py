"""Deployments beyond one machine: Dask (LocalCluster, an existing scheduler, SLURM/PBS through dask-jobqueue),
Kubernetes (``k8s_job_executor``), and the spool merge that keeps DuckDB single-writer (docs/scale_out.md).

``mpq_assets.deploy.dask`` and ``mpq_assets.deploy.k8s`` are imported explicitly (they pull in their engines).
"""

from mpq_assets.deploy.spool_sensor import spool_merge_sensor

__all__ = ["spool_merge_sensor"]
