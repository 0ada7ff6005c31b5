"""``mpq``: the command line (demo, run, init, partitions, codecs, models, read-only SQL, merge, benchmarks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpq_assets.codecs import RATIOS, codec_classes
from mpq_assets.settings import load_settings
from mpq_assets.store import ResultsStore


def _cmd_demo(args: argparse.Namespace) -> int:
    from mpq_assets.defs.demo import DEMO_EXPERIMENTS, run_demo

    run_demo(args.experiments or DEMO_EXPERIMENTS, codecs=args.codecs, bitrates=args.bitrates,
             skip_metrics=args.skip_metrics or (), full=args.full)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mpq_assets.defs.demo import open_instance, print_results, run_experiments
    from mpq_assets.experiments import EXPERIMENTS

    known = dict(EXPERIMENTS)
    if args.study:
        from mpq_assets.defs.study import StudyError, load_study

        try:
            studies = load_study(args.study)
        except StudyError as exc:  # names the defs.yaml, the line and the field
            print(f"mpq run: {exc}", file=sys.stderr)
            return 2
        known.update(studies)
    names = args.experiments or (list(studies) if args.study else [])
    if not names:
        print("mpq run: name an experiment (or give --study DIR); known: " + ", ".join(known), file=sys.stderr)
        return 2
    missing = [n for n in names if n not in known]
    if missing:
        print(f"mpq run: unknown experiment {', '.join(missing)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    experiments = [known[n] for n in names]  # checked against the registries when they were loaded
    settings = load_settings()
    settings.ensure_dirs()
    instance = open_instance(settings)
    print(f"mpq run: results in {settings.db_path}, runs in DAGSTER_HOME={instance.root_directory}")
    try:
        run_experiments(experiments, instance, settings, args.codecs, args.bitrates)
    except RuntimeError as exc:
        print(f"mpq run: {exc}", file=sys.stderr)
        return 1
    print_results(ResultsStore(settings.db_path, lock_timeout_s=settings.lock_timeout_s), experiments)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from mpq_assets.defs.study import init_study

    try:
        files = init_study(args.folder, args.name)
    except FileExistsError as exc:
        print(f"mpq init: {exc}", file=sys.stderr)
        return 2
    for path in files:
        print(f"wrote {path}")
    defs = next(p for p in files if p.name == "defs.yaml")
    print(f"\nEdit {defs}, then: mpq run --study {args.folder}   (or: dagster dev -w {args.folder}/workspace.yaml)")
    return 0


def _cmd_partitions(args: argparse.Namespace) -> int:
    from mpq_assets.defs.demo import open_instance
    from mpq_assets.defs.sensors import sync_codec_partitions

    settings = load_settings()
    instance = open_instance(settings)
    added, waiting = sync_codec_partitions(instance, settings)
    for name, codecs in added.items():
        print(f"{name}: added {', '.join(codecs)}")
    if not added:
        print("every ready codec already has its partitions")
    for codec in sorted(waiting):
        print(f"waiting: {codec} (`mpq models` says what it needs)")
    return 0


def _cmd_codecs(args: argparse.Namespace) -> int:
    for name, cls in codec_classes().items():
        print(f"{name:17} {cls.modality:6} {cls.extension:6} {cls.description}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from mpq_assets.catalog import location, pull, sources

    if args.action == "pull":
        if not args.names:
            print("name the models to pull; `mpq models` lists them", file=sys.stderr)
            return 2
        failed = 0
        for name in args.names:
            try:
                print(f"{name}: {pull(name)}")
            except (KeyError, RuntimeError) as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                failed += 1
        return 1 if failed else 0
    for name, source in sources().items():
        present, where = location(name)
        print(f"{'cached ' if present else 'missing'}  {name:44} {source.kind:10} {source.use}  [{where}]")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from mpq_assets.store.user_sql import QueryError, run_user_query

    settings = load_settings()
    db = Path(args.db) if args.db else settings.db_path
    if args.format == "parquet" and not args.output:
        print("mpq query: --format parquet needs --output FILE", file=sys.stderr)
        return 2
    try:
        df = run_user_query(db, args.sql, settings.lock_timeout_s)
    except QueryError as exc:
        print(f"mpq query: {exc}", file=sys.stderr)
        return 1
    try:
        if args.format == "csv":
            df.to_csv(args.output or sys.stdout, index=False)
        elif args.format == "parquet":
            df.to_parquet(args.output, index=False)
    except OSError as exc:
        print(f"mpq query: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.format == "table":
        import pandas as pd

        with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200):
            print(df.to_string(index=False) if len(df) else "(no rows)")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from mpq_assets.store.spool import merge_spool

    settings = load_settings()
    spool = Path(args.spool) if args.spool else settings.spool_dir
    if spool is None:
        print("no spool directory: set MPQ_SPOOL_DIR or pass --spool DIR", file=sys.stderr)
        return 2
    store = ResultsStore(Path(args.db) if args.db else settings.db_path, lock_timeout_s=settings.lock_timeout_s)
    summary = merge_spool(store, spool, max_units=args.max_units, keep_merged=not args.delete_merged)
    for name in summary.merged:
        print(f"merged   {name}")
    for name in summary.already_applied:
        print(f"applied  {name} (committed before; moved now)")
    for _name, reason in summary.failed:
        print(f"FAILED   {reason}  [moved to {spool / 'failed'}]", file=sys.stderr)
    print(f"{summary.describe()} into {store.path}")
    return 1 if summary.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpq", description="Machine perceptual quality platform")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialise the embedded offline demo and print the summary")
    demo.add_argument("--experiments", nargs="*", help="default: all demo experiments")
    demo.add_argument("--full", action="store_true", help="every demo codec at every ratio with every metric on "
                      "every item (well over an hour on 2 cores; the default quick grid takes about 6 minutes)")
    demo.add_argument("--codecs", nargs="*", help="default: every registered codec of each modality but the "
                      "fixed-setting and fixed-scale variants")
    demo.add_argument("--bitrates", nargs="*", choices=RATIOS, help="default: the whole ratio grid")
    demo.add_argument("--skip-metrics", nargs="*", metavar="METRIC",
                      help="leave out quality metrics, e.g. cdpam dnsmos (CDPAM is ~3 s per clip on CPU)")
    demo.set_defaults(func=_cmd_demo)
    run = sub.add_parser("run", help="materialise experiments (built-in, or a study folder's) on the Dagster "
                         "instance at DAGSTER_HOME, registering the codec partitions they need; no daemon needed")
    run.add_argument("experiments", nargs="*", help="experiment names (default with --study: all of its studies)")
    run.add_argument("--study", metavar="DIR", help="a study folder (`mpq init DIR`) whose defs.yaml files declare "
                     "experiments")
    run.add_argument("--codecs", nargs="*", help="default: the experiment's `codecs`, else every ready codec")
    run.add_argument("--bitrates", nargs="*", choices=RATIOS, help="default: the experiment's `ratios`, else the grid")
    run.set_defaults(func=_cmd_run)
    init = sub.add_parser("init", help="write a study folder: a dg project with one commented defs.yaml")
    init.add_argument("folder")
    init.add_argument("--name", default="my_study", help="the example experiment's name")
    init.set_defaults(func=_cmd_init)
    partitions = sub.add_parser("partitions", help="`sync`: register every ready codec as a partition now (what "
                                "the codec sensor does under a daemon), for the plain dagster CLI")
    partitions.add_argument("action", choices=["sync"])
    partitions.set_defaults(func=_cmd_partitions)
    codecs = sub.add_parser("codecs", help="list registered codecs (built-ins and mpq.codecs plugins)")
    codecs.set_defaults(func=_cmd_codecs)
    models = sub.add_parser("models", help="list known models and whether they are cached; `pull` fetches them")
    models.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    models.add_argument("names", nargs="*")
    models.set_defaults(func=_cmd_models)
    query = sub.add_parser("query", help="run SQL against the results database: read-only, no other file, no "
                           "network, no extensions")
    query.add_argument("sql")
    query.add_argument("--db", help="DuckDB file (default: settings)")
    query.add_argument("--format", choices=["table", "csv", "parquet"], default="table")
    query.add_argument("--output", help="file for csv/parquet output")
    query.set_defaults(func=_cmd_query)
    merge = sub.add_parser("merge", help="apply spooled result units (MPQ_SPOOL_DIR) to DuckDB: run as the only "
                           "writer (docs/scale_out.md)")
    merge.add_argument("--spool", help="spool directory (default: MPQ_SPOOL_DIR)")
    merge.add_argument("--db", help="DuckDB file (default: settings)")
    merge.add_argument("--max-units", type=int, help="stop after this many units (the rest waits)")
    merge.add_argument("--delete-merged", action="store_true", help="delete merged units instead of keeping them "
                       "under <spool>/merged/")
    merge.set_defaults(func=_cmd_merge)
    from mpq_assets import bench as bench_cli

    bench = sub.add_parser("bench", help="time the platform against a hand-written loop on identical work and "
                           "check both give the same numbers (docs/performance.md)")
    bench_cli.add_arguments(bench)
    bench.set_defaults(func=bench_cli.run)
    from mpq_assets.bench import codecs as codec_bench

    bench_codecs = sub.add_parser("bench-codecs", help="encode/decode throughput of the neural codecs per device and "
                                  "batch size (images/s, audio-s/s; docs/performance.md)")
    codec_bench.add_arguments(bench_codecs)
    bench_codecs.set_defaults(func=codec_bench.run)
    from mpq_assets.bench import partition as partition_bench

    bench_partition = sub.add_parser("bench-partition", help="one partition's throughput on a device: the model "
                                     "forward alone vs the predictions / quality step (docs/performance.md)")
    partition_bench.add_arguments(bench_partition)
    bench_partition.set_defaults(func=partition_bench.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    from dagster import BetaWarning, PreviewWarning

    warnings.filterwarnings("ignore", category=BetaWarning)  # backfill_policy is beta in Dagster 1.13
    warnings.filterwarnings("ignore", category=PreviewWarning)
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")  # raised by compressai
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
