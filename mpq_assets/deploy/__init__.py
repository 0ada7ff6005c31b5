"""Deployments beyond one machine: Dask (LocalCluster, an existing scheduler, SLURM/PBS through dask-jobqueue)
and Kubernetes (``k8s_job_executor``), each a code location built on ``mpq_assets.definitions``
(docs/scale_out.md). ``mpq_assets.deploy.dask`` and ``mpq_assets.deploy.k8s`` are imported explicitly (they
pull in their engines).
"""
