"""``mpq bench``'s equality check on a small subset: the hand-written loop and the platform give the same numbers.

Timing is not tested (a shared machine makes it noise); the paths run in this process to keep the suite fast.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from mpq_assets.bench.harness import compare, run_bench
from mpq_assets.bench.spec import default_spec, write_items


def quiet(_: str) -> None:
    pass


def test_image_paths_give_the_same_numbers(mpq_home: Path, tmp_path: Path) -> None:
    spec = default_spec("image", codecs=["jpeg", "webp"], ratios=["20x", "200x"], metrics=["psnr"], subset=2,
                        workers=2, say=quiet)
    root = tmp_path / "bench"
    report = run_bench(spec, root=root, in_process=True, say=quiet)
    c = report.comparison
    assert c.mismatches == [] and c.explained == []
    assert c.checked == {"compressed rows": 8, "quality values": 8, "predictions": 10, "task scores": 40}
    assert report.results["platform"]["encodes"] < report.results["baseline"]["encodes"]  # the shared search
    table = report.table()
    assert "(a)/(b)" in table and "0 mismatch(es)" in table

    # a number that differs is reported, and a path that lost a row too
    a, b = Path(report.results["baseline"]["out_dir"]), Path(report.results["platform"]["out_dir"])
    doctored = tmp_path / "doctored"
    shutil.copytree(b, doctored)
    quality = pd.read_csv(doctored / "quality.csv")
    quality.loc[0, "value"] += 0.01
    quality.to_csv(doctored / "quality.csv", index=False)
    compressed = pd.read_csv(doctored / "compressed.csv")
    compressed.iloc[1:].to_csv(doctored / "compressed.csv", index=False)
    bad = compare(spec, write_items(spec, tmp_path / "items"), a, doctored)
    assert any(m.startswith("quality") and "psnr" in m for m in bad.mismatches)
    assert any(m.startswith("compressed") and "only in (a)" in m for m in bad.mismatches)


def test_speech_paths_give_the_same_numbers(mpq_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper")
    spec = default_spec("speech", codecs=["opus"], ratios=["100x"], metrics=["snr"], subset=1, workers=1,
                        say=quiet)
    report = run_bench(spec, root=tmp_path / "bench", in_process=True, say=quiet)
    assert report.comparison.mismatches == []
    assert report.comparison.checked["predictions"] == 2  # the reconstruction and the reference transcript


def test_codec_throughput_bench_times_batches_and_checks_files(mpq_home: Path, tmp_path: Path) -> None:
    """``mpq bench-codecs`` on a small case: one row per (codec, device, batch), rates from real timings, and the
    speech items cut to one length so that the whole-clip 24 kHz model can batch them."""
    import json

    import torch

    from mpq_assets.bench.codecs import demo_items, run_codec_bench, table
    from mpq_assets.cli import main

    clips = demo_items("audio", 3)
    assert len({c.frames for c in clips}) == 1 and clips[0].duration_s == pytest.approx(2.0)
    images = demo_items("image", 2)
    assert [i.shape for i in images] == [(384, 512, 3)] * 2
    torch.set_num_threads(1)
    rows = run_codec_bench(["encodec-24khz"], ["cpu"], [1, 3], 3, 1, weights="random", progress=quiet)
    assert [(r.codec, r.device, r.batch, r.weights, r.items, r.unit) for r in rows] == \
        [("encodec-24khz", "cpu", b, "random", 3, "audio s") for b in (1, 3)]
    assert all(r.encode_per_s > 0 and r.decode_per_s > 0 and r.peak_device_mb is None for r in rows)
    assert rows[0].alone_max_diff == 0.0 and 0.0 <= rows[1].alone_max_diff < 1e-4  # files decode alone on the CPU
    assert rows[0].bytes_per_item == rows[1].bytes_per_item  # EnCodec's size depends on the duration only
    text = table(rows)
    assert "| encodec-24khz | cpu | 3 | random |" in text and "1.00x / 1.00x" in text
    out = tmp_path / "rows.json"
    assert main(["bench-codecs", "--codecs", "encodec-24khz", "--devices", "cpu", "--batches", "2", "--items", "2",
                 "--repeat", "1", "--weights", "random", "--json", str(out)]) == 0
    assert [r["batch"] for r in json.loads(out.read_text())] == [2]


def test_peak_memory_sampler_stays_cheap() -> None:
    """The PSS sampler must not slow the paths it measures: reading smaps of a torch process takes ~15 ms, so
    it waits long enough to stay near its 2 % duty; it still sees this process's memory."""
    import resource
    import time

    import torch  # noqa: F401  (a process as large as the paths' makes each PSS read as slow as theirs)

    from mpq_assets.bench.measure import PeakMemory

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    c0, t0 = cpu(), time.perf_counter()
    memory = PeakMemory().start()
    time.sleep(1.5)
    result = memory.stop()
    share = (cpu() - c0) / (time.perf_counter() - t0)
    assert memory.samples >= 1 and result["peak_tree_mb"] > 50 and result["peak_main_mb"] > 50
    assert share < 0.15, share  # sampling every 20 ms regardless took ~0.7 of a core here


def test_partition_bench_times_forward_and_step_on_real_partitions(mpq_home: Path, tmp_path: Path) -> None:
    """``mpq bench-partition`` on CPU: a real jpeg@50x partition, each classifier's predictions step and the
    LPIPS quality step run and store their rows; forward alone and step are both timed."""
    from mpq_assets.bench.partition import run_partition_bench, table
    from mpq_assets.store import ResultsStore

    root = tmp_path / "bp"
    results = run_partition_bench("cpu", items=5, size=(64, 48), models=["efficientnet-lite0", "vit-tiny"],
                                  root=root, say=quiet)
    assert [r.what for r in results] == ["classification efficientnet-lite0", "classification vit-tiny",
                                         "quality lpips_alex"]
    for r in results:
        assert r.items == 5 and r.device == "cpu" and r.bare_per_s > 0 and r.full_per_s > 0
        assert r.fraction == pytest.approx(r.full_per_s / r.bare_per_s)
    store = ResultsStore(root / "home" / "mpq.duckdb")
    counts = store.query("SELECT task, count(*) AS n FROM predictions WHERE experiment = 'bench_partition' "
                         "GROUP BY task ORDER BY task")
    assert counts.to_dict("list") == {"task": ["cls_efficientnet_lite0", "cls_vit_tiny"], "n": [5, 5]}
    lp = store.query("SELECT value FROM quality WHERE experiment = 'bench_partition' AND metric = 'lpips_alex'")
    assert len(lp) == 5 and (lp["value"] > 0).all()
    assert "step/bare" in table(results)
