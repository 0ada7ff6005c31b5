"""Run both paths on identical work, each in a fresh process, compare their numbers and print the table.

Each path runs in its own ``spawn`` subprocess, so its peak memory is its own
(``PeakMemory``: the sampled sum over the process and its workers, plus the exact
peak of the main process) and neither inherits the other's loaded models or
caches. Both get the same torch thread count. With ``repeat`` > 1 the paths
alternate (a, b, a, b, ...) and each path's fastest run is reported, which damps
the noise of a shared machine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpq_assets.bench.spec import BenchItem, BenchSpec, write_items

if TYPE_CHECKING:
    import pandas as pd

PATHS = ("baseline", "platform")
LABELS = {"baseline": "(a) hand loop", "platform": "(b) platform"}
# value tolerances: the paths run the same float code, but batch composition may change the last bits
ATOL, RTOL = 1e-5, 1e-5
SCORE_ATOL, ARRAY_ATOL = 1e-4, 1e-4
_KEY = ["codec", "bitrate", "item_id"]  # a compressed row's identity in every output CSV


# ------------------------------------------------------------------------------------------------------- one path


def _child(path: str, spec: BenchSpec, items: list[BenchItem], data_dir: str, out_dir: str, env: dict[str, str],
           result_file: str) -> None:
    """Entry point of a path's subprocess: run it, measure it, write its numbers to ``result_file``."""
    os.environ.update(env)
    import logging
    import warnings

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    _measure(path, spec, items, data_dir, out_dir, result_file)


def _measure(path: str, spec: BenchSpec, items: list[BenchItem], data_dir: str, out_dir: str,
             result_file: str) -> None:
    from mpq_assets.bench.measure import Clock, PeakMemory

    memory = PeakMemory().start()
    if spec.torch_threads:
        import torch

        torch.set_num_threads(spec.torch_threads)
    clock = Clock()
    t0 = time.perf_counter()
    if path == "baseline":
        from mpq_assets.bench.baseline import run_baseline

        extra = run_baseline(spec, items, Path(out_dir), clock)
    else:
        from mpq_assets.bench.platform import run_platform

        extra = run_platform(spec, Path(data_dir), Path(out_dir), clock)
    wall = time.perf_counter() - t0
    import torch

    result = {"path": path, "stages": dict(clock.seconds), "wall_s": wall, "torch_threads": torch.get_num_threads(),
              **extra, **memory.stop()}
    Path(result_file).write_text(json.dumps(result))


def _run_path(path: str, spec: BenchSpec, items: list[BenchItem], root: Path, run: int,
              models_dir: Path, in_process: bool = False) -> dict[str, Any]:
    out_dir = root / f"{path}-{run}"
    home = root / f"home-{path}-{run}"
    env = {"MPQ_HOME": str(home), "MPQ_MODELS": str(models_dir), "MPQ_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    for var in ("MPQ_DB", "MPQ_ARTIFACTS"):
        env[var] = ""
    result_file = root / f"result-{path}-{run}.json"
    if in_process:  # tests: the same code, no fresh process (so no meaningful memory numbers)
        from mpq_assets.bench.measure import environment
        from mpq_assets.pipeline.memo import METRIC_VALUES, PREDICTIONS

        # as a fresh process would: nothing this process computed before (another test's run of the same
        # files, possibly with another thread count) may stand in for the path's own work
        PREDICTIONS.clear()
        METRIC_VALUES.clear()
        with environment(env):
            _measure(path, spec, items, str(root / "data"), str(out_dir), str(result_file))
    else:
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_child, args=(path, spec, items, str(root / "data"), str(out_dir), env,
                                                str(result_file)), name=f"bench-{path}")
        proc.start()
        proc.join()
        if proc.exitcode != 0 or not result_file.exists():
            raise RuntimeError(f"benchmark path {path} failed (exit code {proc.exitcode}); see its output above")
    result = json.loads(result_file.read_text())
    result["out_dir"] = str(out_dir)
    return result


# ------------------------------------------------------------------------------------------------------ comparison


@dataclass
class Comparison:
    checked: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)  # rate-control differences on non-monotone ladders


def _close(a: float, b: float, atol: float = ATOL, rtol: float = RTOL) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return abs(a - b) <= atol + rtol * abs(a)


def _same_summary(a: Any, b: Any) -> bool:
    """Prediction summaries: strings and structure equal, numbers within tolerance."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_summary(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_summary(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return _close(float(a), float(b), SCORE_ATOL, SCORE_ATOL)
    return a == b


def _non_monotone(spec: BenchSpec, items: dict[str, BenchItem], codec_name: str, bitrate: str, item_id: str,
                  setting_a: str, setting_b: str) -> bool:
    """Whether both settings fit and the rung above the lower one does not: two local boundaries of a
    non-monotone ladder (rate_control's module docstring), proven with two extra encodes."""
    from mpq_assets.codecs import budget_bytes, get_codec, parse_ratio
    from mpq_assets.media.audio import load_audio
    from mpq_assets.media.image import load_image

    codec = get_codec(codec_name)
    item = (load_audio if spec.modality == "audio" else load_image)(items[item_id].path)
    ladder = list(codec.ladder(item))
    labels = [codec.label(s) for s in ladder]
    if setting_a not in labels or setting_b not in labels:
        return False
    lo, hi = sorted((labels.index(setting_a), labels.index(setting_b)))
    budget = budget_bytes(item, parse_ratio(bitrate))
    return (lo + 1 < hi and len(codec.encode(item, ladder[hi])) <= budget
            and len(codec.encode(item, ladder[lo + 1])) > budget)


def _read_table(name: str, d: Path) -> pd.DataFrame:
    """One output CSV of a path, with the key columns as strings so both paths' rows join."""
    import pandas as pd

    df = pd.read_csv(d / name, keep_default_na=False, na_values=[""])
    df["item_id"] = df["item_id"].fillna("*")  # "*": a partition's aggregate score rows
    return df.astype({"codec": str, "bitrate": str, "item_id": str})


def _compare_compressed(spec: BenchSpec, by_id: dict[str, BenchItem], a_dir: Path, b_dir: Path,
                        out: Comparison) -> set[tuple[str, str, str]]:
    """Achieved bytes and settings; returns the keys that differ, whose downstream numbers are not compared."""
    ca, cb = _read_table("compressed.csv", a_dir), _read_table("compressed.csv", b_dir)
    merged = ca.merge(cb, on=_KEY, how="outer", suffixes=("_a", "_b"), indicator="where")
    skip: set[tuple[str, str, str]] = set()
    for r in merged.itertuples(index=False):
        k = (r.codec, r.bitrate, r.item_id)
        if r.where != "both":
            out.mismatches.append(f"compressed {k}: only in {'(a)' if r.where == 'left_only' else '(b)'}")
            continue
        if (r.bytes_a, r.setting_a, bool(r.rate_met_a)) == (r.bytes_b, r.setting_b, bool(r.rate_met_b)):
            continue
        skip.add(k)
        what = (f"compressed {k}: (a) {r.setting_a} {r.bytes_a} B met={bool(r.rate_met_a)}, "
                f"(b) {r.setting_b} {r.bytes_b} B met={bool(r.rate_met_b)}")
        if bool(r.rate_met_a) and bool(r.rate_met_b) and _non_monotone(spec, by_id, *k, r.setting_a, r.setting_b):
            out.explained.append(what + ": both fit, the ladder is not monotone between them")
        else:
            out.mismatches.append(what)
    out.checked["compressed rows"] = len(merged)
    return skip


def _compare_quality(a_dir: Path, b_dir: Path, skip: set[tuple[str, str, str]], out: Comparison) -> None:
    """Quality values within float tolerance, for the rows both paths compressed alike."""
    qa, qb = _read_table("quality.csv", a_dir), _read_table("quality.csv", b_dir)
    merged = qa.merge(qb, on=[*_KEY, "metric"], how="outer", suffixes=("_a", "_b"))
    for r in merged.itertuples(index=False):
        if (r.codec, r.bitrate, r.item_id) in skip:
            continue
        if not _close(r.value_a, r.value_b):
            out.mismatches.append(f"quality {(r.codec, r.bitrate, r.item_id)} {r.metric}: (a) {r.value_a!r}, "
                                  f"(b) {r.value_b!r}")
    out.checked["quality values"] = len(merged)


def _compare_prediction_array(k: tuple[str, str, str], arrays_a: Any, arrays_b: Any, out: Comparison) -> None:
    """One prediction's saved array: present in both paths or neither, and within ``ARRAY_ATOL``."""
    import numpy as np

    name = "|".join(k)
    if (name in arrays_a) != (name in arrays_b):
        out.mismatches.append(f"prediction array {k}: only in one path")
    elif name in arrays_a:
        diff = float(np.max(np.abs(arrays_a[name].astype(np.float64) - arrays_b[name].astype(np.float64))))
        if not diff <= ARRAY_ATOL:
            out.mismatches.append(f"prediction array {k}: max abs difference {diff:.2e}")


def _compare_predictions(a_dir: Path, b_dir: Path, skip: set[tuple[str, str, str]], out: Comparison) -> None:
    """Prediction summaries and arrays, for the rows both paths compressed alike."""
    import numpy as np

    pa, pb = _read_table("predictions.csv", a_dir), _read_table("predictions.csv", b_dir)
    arrays_a, arrays_b = np.load(a_dir / "arrays.npz"), np.load(b_dir / "arrays.npz")
    merged = pa.merge(pb, on=_KEY, how="outer", suffixes=("_a", "_b"))
    for r in merged.itertuples(index=False):
        k = (r.codec, r.bitrate, r.item_id)
        if k in skip:
            continue
        if not isinstance(r.prediction_a, str) or not isinstance(r.prediction_b, str):
            out.mismatches.append(f"prediction {k}: only in {'(a)' if isinstance(r.prediction_a, str) else '(b)'}")
            continue
        if not _same_summary(json.loads(r.prediction_a), json.loads(r.prediction_b)):
            out.mismatches.append(f"prediction {k}: (a) {r.prediction_a[:120]} (b) {r.prediction_b[:120]}")
        _compare_prediction_array(k, arrays_a, arrays_b, out)
    out.checked["predictions"] = len(merged)


def _compare_scores(a_dir: Path, b_dir: Path, skip: set[tuple[str, str, str]], out: Comparison) -> None:
    """Task scores within ``SCORE_ATOL``; a partition's aggregate rows are skipped if any of its items is."""
    skip_parts = {(c, b) for c, b, _ in skip}
    sa, sb = _read_table("scores.csv", a_dir), _read_table("scores.csv", b_dir)
    merged = sa.merge(sb, on=[*_KEY, "metric"], how="outer", suffixes=("_a", "_b"))
    for r in merged.itertuples(index=False):
        if (r.codec, r.bitrate, r.item_id) in skip or (r.item_id == "*" and (r.codec, r.bitrate) in skip_parts):
            continue
        if not _close(r.value_a, r.value_b, SCORE_ATOL, SCORE_ATOL):
            out.mismatches.append(f"task score {(r.codec, r.bitrate, r.item_id)} {r.metric}: (a) {r.value_a!r}, "
                                  f"(b) {r.value_b!r}")
    out.checked["task scores"] = len(merged)


def compare(spec: BenchSpec, items: list[BenchItem], a_dir: Path, b_dir: Path) -> Comparison:
    """Every number of (a) against (b): achieved bytes and settings exactly, values within float tolerance."""
    out = Comparison()
    skip = _compare_compressed(spec, {i.item_id: i for i in items}, a_dir, b_dir, out)
    _compare_quality(a_dir, b_dir, skip, out)
    _compare_predictions(a_dir, b_dir, skip, out)
    _compare_scores(a_dir, b_dir, skip, out)
    return out


# ---------------------------------------------------------------------------------------------------------- report


@dataclass
class BenchReport:
    spec: BenchSpec
    items: int
    results: dict[str, dict[str, Any]]  # path -> fastest run's result
    runs: dict[str, list[float]]        # path -> compared seconds of every run
    comparison: Comparison

    def stages(self, path: str) -> dict[str, float]:
        """Seconds per compared stage; setup (the platform's ingest) is left out of both."""
        s = self.results[path]["stages"]
        if path == "baseline":
            compress = s.get("load", 0.0) + s.get("encode", 0.0) + s.get("decode", 0.0)
        else:
            compress = s.get("compress", 0.0)
        out = {"compress": compress, "quality": s.get("quality", 0.0), "predict": s.get("predict", 0.0),
               "store": s.get("store", 0.0)}
        out["total"] = sum(out.values())
        return out

    @property
    def work(self) -> int:
        return self.items * len(self.spec.partitions)

    @property
    def speedup(self) -> float:
        return self.stages("baseline")["total"] / self.stages("platform")["total"]

    def to_json(self) -> dict[str, Any]:
        return {"spec": dataclasses.asdict(self.spec), "items": self.items, "work": self.work,
                "stages": {p: self.stages(p) for p in PATHS}, "results": self.results, "runs": self.runs,
                "speedup": self.speedup, "checked": self.comparison.checked,
                "mismatches": self.comparison.mismatches, "explained": self.comparison.explained}

    def table(self) -> str:
        a, b = self.stages("baseline"), self.stages("platform")
        ra, rb = self.results["baseline"], self.results["platform"]
        sa = ra["stages"]

        def ratio(x: float, y: float) -> str:
            return f"{x / y:6.1f}x" if y > 0 else "     -"

        spec = self.spec
        lines = [
            f"{spec.sweep} sweep: {self.items} items x {len(spec.codecs)} codecs ({', '.join(spec.codecs)}) x "
            f"{len(spec.ratios)} ratios = {self.work} encodes-to-budget; metrics {', '.join(spec.metrics)}; "
            f"task {spec.task} {spec.task_args.get('model', '')}",
            f"torch threads {ra['torch_threads']} in both paths; platform worker processes: "
            f"{spec.workers or 'default (MPQ_WORKERS or the cores)'}",
            "",
            f"{'stage':28} {LABELS['baseline']:>14} {LABELS['platform']:>14} {'(a)/(b)':>8}",
        ]
        rows = [("compressed (encode+decode)", "compress"), ("quality", "quality"),
                ("predict (+ task scores)", "predict"), ("store (files, DuckDB)", "store")]
        for label, stage in rows:
            lines.append(f"{label:28} {a[stage]:12.1f} s {b[stage]:12.1f} s {ratio(a[stage], b[stage]):>8}")
            if stage == "compress":
                lines.append(f"{'  encode':28} {sa.get('encode', 0):12.1f} s {rb['encode_cpu_s']:10.1f} CPU-s")
                lines.append(f"{'  decode':28} {sa.get('decode', 0):12.1f} s {rb['decode_cpu_s']:10.1f} CPU-s")
        lines.append(f"{'total':28} {a['total']:12.1f} s {b['total']:12.1f} s {ratio(a['total'], b['total']):>8}")
        lines.append(f"{'items/s':28} {self.work / a['total']:14.2f} {self.work / b['total']:14.2f}")
        lines.append(f"{'encodes':28} {ra['encodes']:14d} {rb['encodes']:14d} "
                     f"{ratio(ra['encodes'], rb['encodes']):>8}")

        def mb(r: dict[str, Any], k: str) -> str:
            return f"{r[k]:.0f} MB" if r.get(k) else "-"

        lines.append(f"{'peak RSS, main process':28} {mb(ra, 'peak_main_mb'):>14} {mb(rb, 'peak_main_mb'):>14}")
        lines.append(f"{'peak PSS, all processes':28} {mb(ra, 'peak_tree_mb'):>14} {mb(rb, 'peak_tree_mb'):>14}")
        if len(self.runs["baseline"]) > 1:
            lines.append("runs (s): " + "; ".join(f"{LABELS[p]} " + ", ".join(f"{t:.1f}" for t in self.runs[p])
                                                 for p in PATHS))
        c = self.comparison
        lines.append("")
        lines.append("equality: " + ", ".join(f"{n} {k}" for k, n in c.checked.items()) + f" compared; "
                     f"{len(c.mismatches)} mismatch(es), {len(c.explained)} explained difference(s)")
        lines += [f"  explained: {m}" for m in c.explained]
        lines += [f"  MISMATCH: {m}" for m in c.mismatches[:30]]
        if len(c.mismatches) > 30:
            lines.append(f"  ... and {len(c.mismatches) - 30} more")
        return "\n".join(lines)


def _prepare_models(spec: BenchSpec) -> None:
    """One-time conversions (the LPIPS backbone) before either path runs, so neither pays for them."""
    from mpq_assets.quality.image import convert_lpips_backbone

    for name in spec.metrics:
        if name.startswith("lpips_"):
            convert_lpips_backbone(name.split("_", 1)[1])


def run_bench(spec: BenchSpec, root: str | Path | None = None, repeat: int = 1,
              say: Callable[[str], None] = print, in_process: bool = False) -> BenchReport:
    """Run (a) and (b) ``repeat`` times each on identical work, compare their numbers, report the fastest runs.

    ``in_process`` (tests) runs both paths in this process: same numbers, no fair timing or memory.
    """
    from mpq_assets.settings import load_settings

    keep = root is not None
    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="mpq-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        items = write_items(spec, root / "data")
        if not items:
            raise RuntimeError("no items to benchmark")
        models_dir = load_settings().models_dir
        _prepare_models(spec)
        runs: dict[str, list[dict[str, Any]]] = {p: [] for p in PATHS}
        for run in range(repeat):
            for path in PATHS:
                say(f"running {LABELS[path]} ({run + 1}/{repeat}) ...")
                runs[path].append(_run_path(path, spec, items, root, run, models_dir, in_process))
        probe = BenchReport(spec, len(items), {}, {}, Comparison())
        compared: dict[str, list[float]] = {}
        best: dict[str, dict[str, Any]] = {}
        for path in PATHS:
            totals = []
            for r in runs[path]:
                probe.results = {path: r}
                totals.append(probe.stages(path)["total"])
            compared[path] = totals
            best[path] = runs[path][totals.index(min(totals))]
        comparison = compare(spec, items, Path(best["baseline"]["out_dir"]), Path(best["platform"]["out_dir"]))
        return BenchReport(spec, len(items), best, compared, comparison)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
