"""The embedded offline demo: materialise every demo experiment through Dagster and summarise.

Runs go into the Dagster instance at ``$DAGSTER_HOME`` (``make demo`` uses
``data/dagster_home``), so ``make dev`` afterwards shows the same materialisations
in the UI.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
from dagster import DagsterInstance, materialize

from mpq_assets.codecs import RATIOS, codec_names, get_codec
from mpq_assets.defs.assets import ANALYSES, experiment_assets
from mpq_assets.defs.partitions import codec_partitions_name, partition_key
from mpq_assets.defs.resources import MpqResource
from mpq_assets.experiments import EXPERIMENTS, Experiment
from mpq_assets.pipeline.analyse import point_summary, reference_scores, scores_table
from mpq_assets.pipeline.progress import echo_to
from mpq_assets.pipeline.training import matrix_table
from mpq_assets.settings import Settings, load_settings
from mpq_assets.store import ResultsStore

DEMO_EXPERIMENTS = ("demo_images", "demo_documents", "demo_speech", "demo_music", "demo_commands", "demo_shapes")

# The quick default of `mpq demo` (5m32s on 2 CPU cores, 2026-12-08): every experiment, task and analysis on a
# smaller grid; `mpq demo --full` runs every demo codec at every ratio with every metric on every item.
QUICK_CODECS = {"image": ("jpeg", "webp", "jpeg-scaled"), "audio": ("opus", "mp3", "codec2")}
QUICK_RATIOS = {"image": ("20x", "100x", "500x"), "audio": ("20x", "100x")}
QUICK_SKIP_METRICS = ("cdpam", "dnsmos")  # ~3 s and ~0.5 s a speech clip
QUICK_SPEECH_PER_VOICE = 3                # 12 of the 24 sentences
QUICK_NOTE = ("quick demo: codecs {image} (images) and {audio} (audio) at {iratios} / {aratios}; no CDPAM or "
              "DNSMOS; 12 of the 24 speech clips; training studies on 2 variants x 1 seed. `mpq demo --full` runs "
              "the whole grid (well over an hour on 2 cores).")


def quick(exp: Experiment) -> Experiment:
    """The quick demo's version of a demo experiment (see ``QUICK_NOTE``)."""
    changes: dict[str, object] = {
        "quality_metrics": tuple(m for m in exp.quality_metrics if m not in QUICK_SKIP_METRICS)}
    if exp.training is not None:
        variants = exp.training.variants
        changes["training"] = dataclasses.replace(exp.training, variants=(variants[0], variants[-1]), seeds=1)
    else:
        changes["codecs"] = tuple(c for c in QUICK_CODECS[exp.modality] if c in codec_names(exp.modality))
        changes["ratios"] = QUICK_RATIOS[exp.modality]
    if exp.dataset == "demo_speech":
        changes["dataset_args"] = {**dict(exp.dataset_args), "per_voice": QUICK_SPEECH_PER_VOICE}
    return dataclasses.replace(exp, **changes)


def ensure_codec_partitions(instance: DagsterInstance, experiment: Experiment, codecs: Sequence[str]) -> None:
    """Register codec partitions for a scripted run (the UI path uses the codec sensor instead)."""
    name = codec_partitions_name(experiment.modality)
    missing = [c for c in dict.fromkeys(codecs) if not instance.has_dynamic_partition(name, c)]
    if missing:
        instance.add_dynamic_partitions(name, missing)


def materialise_experiment(
    experiment: Experiment,
    instance: DagsterInstance,
    codecs: Sequence[str] | None = None,
    bitrates: Sequence[str] | None = None,
    resource: MpqResource | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Materialise the unpartitioned assets, then every requested partition (one Dagster run each).

    An experiment with a training study compresses its training split only at the declared training variants,
    and, unless ``bitrates`` are given, tests at those same variants (a square train x test matrix)."""
    resources = {"mpq": resource or MpqResource()}
    # the caller prints progress and one line per failure; the run in the Dagster UI keeps the whole log
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    assets = experiment_assets(experiment)
    whole = [a.key for a in assets if a.partitions_def is None and a.key.path[-1] not in ANALYSES]
    per_partition = [a.key for a in assets if a.partitions_def is not None]
    analyses = [a.key for a in assets if a.key.path[-1] in ANALYSES]
    codecs = list(codecs) if codecs is not None else codec_names(experiment.modality)
    variants = list(experiment.training.variants) if experiment.training else []
    if variants and bitrates is None:
        plan = {c: [b for v, b in variants if v == c] for c in codecs}
    else:
        plan = {c: list(bitrates or RATIOS) for c in codecs}
    own = [k for k in per_partition if k.path[0] == experiment.name]
    t0 = time.perf_counter()
    result = materialize(assets, selection=whole, instance=instance, resources=resources, run_config=quiet,
                         raise_on_error=False)
    if not result.success:
        raise RuntimeError(f"{experiment.name}: {', '.join(k.to_user_string() for k in whole)} failed: "
                           f"{first_failure(result)}")
    say(f"  {', '.join(k.to_user_string() for k in whole)} materialised ({time.perf_counter() - t0:.1f}s)")
    ensure_codec_partitions(instance, experiment, codecs)
    groups: dict[str, list[str]] = {}
    for k in per_partition:
        groups.setdefault(k.path[0], []).append(k.path[-1])
    names = " + ".join(f"{g}/{{{', '.join(v)}}}" for g, v in groups.items())
    total, done = sum(len(rates) for rates in plan.values()), 0
    if total:
        say(f"  {names}: {total} partitions")
    for codec, rates in plan.items():
        for bitrate in rates:
            t0 = time.perf_counter()
            selection = per_partition if (codec, bitrate) in variants or not variants else own
            result = materialize(assets, selection=selection, partition_key=partition_key(codec, bitrate),
                                 instance=instance, resources=resources, raise_on_error=False, run_config=quiet)
            done += 1
            status = "done" if result.success else f"FAILED: {first_failure(result)}"
            say(f"  [{done}/{total}] {codec}@{bitrate} {status} ({time.perf_counter() - t0:.1f}s)")
    if experiment.training is not None:
        spec = experiment.training
        say(f"  {experiment.name}: training {spec.recipe} on {1 + len(spec.variants)} training variants x "
            f"{spec.seeds} seeds, then testing every model on every test variant (a few minutes)")
    t0 = time.perf_counter()
    result = materialize(assets, selection=analyses, instance=instance, resources=resources, run_config=quiet,
                         raise_on_error=False)
    status = "materialised" if result.success else f"FAILED: {first_failure(result)}"
    say(f"  {', '.join(k.to_user_string() for k in analyses)} {status} ({time.perf_counter() - t0:.1f}s)")


def first_failure(result: Any) -> str:
    """The first failed step's error, one line (the run in the Dagster UI has the whole traceback)."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause  # Dagster's wrappers: the user's exception is the innermost cause
            message = error.message.strip().splitlines()[0] if error is not None else ""
            return f"{event.step_key}: {message}"
    return "see the run in the Dagster UI"


def summary_table(store: ResultsStore, experiment: str) -> pd.DataFrame:
    """codec x target ratio -> pooled achieved ratio and bpp/kbps; '*' marks items that missed the target,
    '=' a partition that is the same operating point as a lower target (identical bitstreams)."""
    df = store.query("SELECT r.*, p.point, p.codec || '@' || p.bitrate <> p.point AS duplicate FROM rate_summary r "
                     "JOIN partition_points p USING (experiment, codec, bitrate) WHERE r.experiment = ? "
                     "ORDER BY codec, target_ratio", [experiment])
    if df.empty:
        return df
    rate_col, unit = ("bpp", "bpp") if df["bpp"].notna().any() else ("kbps", "kbps")

    def cell(r: pd.Series) -> str:
        miss = f" *{int(r.missed_target)}" if r.missed_target else ""
        same = " =" if r.duplicate else ""
        return f"{r.ratio:7.1f}:1 {r[rate_col]:7.3f}{unit}{miss}{same}"

    df["cell"] = df.apply(cell, axis=1)
    table = df.pivot(index="codec", columns="bitrate", values="cell")
    return table[[b for b in RATIOS if b in table.columns]]


def codec_ready(name: str, say: Callable[[str], None] = print, settings: Settings | None = None) -> bool:
    """False (after one line saying why and how to fix it) for a codec whose weights are not here."""
    codec = get_codec(name, settings=settings)
    reason = codec.weights_missing()
    if reason:  # one short line; `mpq models` has the long explanation (files, URLs, where to copy them)
        pulls = [s.name for s in codec.weight_sources if s.kind in ("hub", "download")]
        fix = (f"`mpq models pull {' '.join(pulls)}` on a networked machine" if pulls else
               "`mpq models` says where to put them")
        say(f"  skipping codec {name}: weights not here ({fix})")
    return reason is None


def missing_optional_models(experiment: Experiment, settings: Settings | None = None) -> list[str]:
    """One line per optional task whose weights are not cached, saying how to fetch them."""
    from mpq_assets.catalog import location, sources

    known, lines = sources(), []
    for spec in experiment.tasks:
        model = str(spec.args.get("model", ""))
        if not (spec.optional and model in known):
            continue
        cached, where = location(model, settings)
        if cached:
            continue
        if known[model].kind == "package":
            lines.append(f"skipping task {spec.name}: {model} is not installed ({where})")
        else:
            lines.append(f"skipping task {spec.name}: {model} weights are not cached (`mpq models pull {model}` "
                         f"on a networked machine, or copy {where} here)")
    return lines


def prepare_dagster_home(home: str | os.PathLike[str]) -> None:
    """Create DAGSTER_HOME with a dagster.yaml (telemetry off: our machines have no internet)."""
    os.makedirs(home, exist_ok=True)
    config = os.path.join(home, "dagster.yaml")
    if not os.path.exists(config):
        with open(config, "w", encoding="utf-8") as fh:
            fh.write("telemetry:\n  enabled: false\n")


def analysis_tables(store: ResultsStore, experiment: str, headline: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
    """The demo's short view of the analyses: BD-rate / 95%-kept ratio on headline task measures, the best
    quality predictor of each task measure (partition level, Spearman) and where compression helped."""
    points = point_summary(store, experiment)
    curves = store.query("SELECT codec, measure, points, merged, missed, anchor, bd_rate, "
                         "coalesce(bd_rate_note, '') AS bd_note, kept_ratio, coalesce(kept_note, '') AS kept_note "
                         "FROM rate_curves WHERE experiment = ? AND kind = 'task' ORDER BY measure, codec",
                         [experiment])
    others = store.query("SELECT measure, anchor, codec, bd_rate, anchor_points, points FROM bd_rates "
                         "WHERE experiment = ? AND kind = 'task' AND bd_rate IS NOT NULL ORDER BY measure, anchor, "
                         "codec", [experiment])
    if headline:
        curves = curves[curves["measure"].isin(headline)]
        others = others[others["measure"].isin(headline)]
    best = store.query("SELECT task || '.' || task_metric AS task_measure, quality_metric AS best_predictor, r, "
                       "ci_low, ci_high, n, merged, missed FROM correlation_ranking WHERE experiment = ? "
                       "AND level = 'partition' AND method = 'spearman' AND rank = 1 ORDER BY task_measure",
                       [experiment])
    wrong = store.query("SELECT task || '.' || task_metric AS task_measure, quality_metric, r, n FROM "
                        "correlation_ranking WHERE experiment = ? AND level = 'partition' AND method = 'spearman' "
                        "AND wrong_sign ORDER BY task_measure, quality_metric", [experiment])
    gains = store.query("SELECT task || '.' || metric AS task_measure, count(*) AS points, "
                        "count(*) FILTER (WHERE helped) AS helped, count(*) FILTER (WHERE hurt) AS hurt, "
                        "string_agg(CASE WHEN helped THEN point END, ', ' ORDER BY ratio) AS helped_at "
                        "FROM paired_differences WHERE experiment = ? GROUP BY ALL ORDER BY task_measure",
                        [experiment])
    models = store.query("SELECT metric, codec, string_agg(task || ' ' || coalesce(round(kept_ratio, 1)::VARCHAR, "
                         "'none'), ', ' ORDER BY breaks_first, task) AS first_to_break_to_last FROM model_degradation "
                         "WHERE experiment = ? AND models > 1 GROUP BY ALL ORDER BY metric, codec", [experiment])
    tasks = store.query("SELECT codec, string_agg(task || ' ' || coalesce(round(kept_ratio, 1)::VARCHAR, 'none') "
                        "|| ' (' || first_measure || ')', ', ' ORDER BY breaks_first, task) AS first_to_break_to_last "
                        "FROM task_degradation WHERE experiment = ? AND tasks > 1 GROUP BY ALL ORDER BY codec",
                        [experiment])
    return {title: frame for title, frame in (
        ("operating points per codec (every analysis counts distinct points: merged = duplicate partitions, missed "
         "= partitions with items that missed their target)", points),
        ("BD-rate (%, vs the anchor codec) and highest achieved ratio keeping 95% of the reference score, over "
         "distinct points", curves),
        ("BD-rate (%) against every anchor with enough distinct points", others),
        ("best quality predictor per task measure (Spearman r over distinct points, 95% CI)", best),
        ("correlations with the wrong sign (worse quality, better task score): never ranked", wrong),
        ("which model breaks first, per codec: each model's highest achieved ratio keeping 95% of its own "
         "uncompressed score (none: below 95% at the codec's lowest ratio)", models),
        ("which task breaks first, per codec: each task's highest achieved ratio keeping 95% of its uncompressed "
         "score on every measure (in brackets: the measure that falls first)", tasks),
        ("trained on (rows) x tested on (columns): accuracy, mean ± sd over seeds; training and test items are "
         "disjoint", matrix_table(store, experiment)),
        ("compression vs the uncompressed items, per task measure: distinct points where the paired 95% interval "
         "(items resampled) is above 0 (helped) or below (hurt)", gains),
    ) if len(frame)}


def open_instance(settings: Settings) -> DagsterInstance:
    """The Dagster instance at ``$DAGSTER_HOME`` (default ``<MPQ_HOME>/dagster_home``, created with telemetry off):
    the one ``dagster dev`` and the UI show."""
    home = os.environ.get("DAGSTER_HOME") or str(settings.home / "dagster_home")
    prepare_dagster_home(home)
    os.environ["DAGSTER_HOME"] = home
    return DagsterInstance.get()


def run_experiments(experiments: Sequence[Experiment], instance: DagsterInstance, settings: Settings,
                    codecs: Sequence[str] | None = None, bitrates: Sequence[str] | None = None,
                    say: Callable[[str], None] = print, demo_only: bool = False) -> None:
    """Materialise each experiment (registering the codec partitions it needs first), one run per partition.
    Without ``codecs``: a training study's declared variants, else every ready codec of the modality (the demo's
    default set when ``demo_only``)."""
    for exp in experiments:
        studied = list(dict.fromkeys(c for c, _ in exp.training.variants)) if exp.training else None
        chosen = codecs if codecs is not None else (list(exp.codecs) or studied
                                                     or codec_names(exp.modality, demo_only=demo_only))
        mine = [c for c in chosen if c in codec_names(exp.modality)]
        say(f"\n== {exp.name}: {exp.description}")
        mine = [c for c in mine if codec_ready(c, say, settings)]
        if not mine:
            say(f"  no {exp.modality} codec selected or ready: only the unpartitioned assets run")
        for line in missing_optional_models(exp, settings):
            say(f"  {line}")
        # each slow step's items done / total and ETA: a bar on a terminal, else lines in order with ``say``
        with echo_to(None if sys.stderr.isatty() else say):
            materialise_experiment(exp, instance, mine,
                                   bitrates if bitrates is not None else (list(exp.ratios) or None), say=say)


def print_results(store: ResultsStore, experiments: Sequence[Experiment], say: Callable[[str], None] = print) -> None:
    """Per experiment: achieved rates, task scores on the originals, every distinct point's rate, quality and task
    scores, and the analyses' short tables."""
    for exp in experiments:
        name = exp.name
        table = summary_table(store, name)
        say(f"\n{name}: achieved ratio and rate (pooled over items) per codec x target ratio (*n = items that "
            "missed the target, = the same bitstreams as a lower target)")
        say(table.to_string() if not table.empty else "  (no rows)")
        scores = scores_table(store, name, exp.headline)
        if not scores.empty:
            ref = reference_scores(store, name)
            if not ref.empty:
                say(f"\n{name}: task scores on the uncompressed items (vs labels)")
                say(ref.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            say(f"\n{name}: achieved rate, mean quality and task scores per distinct operating point (targets: "
                "the partitions it stands for; *_ref, agreement, kl: vs the task's output on the uncompressed item; "
                "others vs labels)")
            say(scores.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for title, frame in analysis_tables(store, name, exp.headline).items():
            say(f"\n{name}: {title}")
            say(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", max_colwidth=70))


def run_demo(
    experiments: Sequence[str] = DEMO_EXPERIMENTS,
    codecs: Sequence[str] | None = None,
    bitrates: Sequence[str] | None = None,
    say: Callable[[str], None] = print,
    skip_metrics: Sequence[str] = (),
    full: bool = False,
) -> None:
    """The demo experiments through Dagster, then their results; the quick grid unless ``full``."""
    started = time.perf_counter()
    # the demo is offline by definition: never wait on a model hub (HF retries for ~25 s per attempt)
    os.environ.setdefault("MPQ_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = load_settings()
    settings.ensure_dirs()
    instance = open_instance(settings)
    store = ResultsStore(settings.db_path, lock_timeout_s=settings.lock_timeout_s)
    say(f"MPQ demo: results in {settings.db_path}, runs in DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    exps = [EXPERIMENTS[name] for name in experiments]
    if not full:
        exps = [quick(e) for e in exps]
        say(QUICK_NOTE.format(image=", ".join(QUICK_CODECS["image"]), audio=", ".join(QUICK_CODECS["audio"]),
                              iratios=", ".join(QUICK_RATIOS["image"]), aratios=", ".join(QUICK_RATIOS["audio"])))
    if skip_metrics:
        exps = [dataclasses.replace(e, quality_metrics=tuple(m for m in e.quality_metrics if m not in skip_metrics))
                for e in exps]
    run_experiments(exps, instance, settings, codecs, bitrates, say, demo_only=True)
    print_results(store, exps, say)
    failures = store.query("SELECT experiment, stage, codec, bitrate, item_id, error FROM failures")
    say(f"\nfailures recorded: {len(failures)}")
    if len(failures):
        say(failures.to_string(index=False, max_colwidth=80))
    say(f"\nQuery the results: mpq query \"SELECT * FROM rate_summary\"  (or .venv/bin/duckdb -readonly "
        f"{settings.db_path})")
    report = settings.reports_dir / "index.html"
    say(f"HTML report: {report}" if report.exists() else "HTML report: not written (no experiment finished)")
    minutes, seconds = divmod(round(time.perf_counter() - started), 60)
    say(f"demo wall time: {minutes}m{seconds:02d}s on {os.cpu_count()} CPU cores ({'full' if full else 'quick'})")
