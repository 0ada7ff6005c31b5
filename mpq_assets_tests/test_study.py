"""A user's own study: a folder outside the repository with defs.yaml files, run by `mpq run` on a fresh Dagster
instance with no daemon, and loaded by the Dagster CLI like any component project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from dagster import DagsterInstance
from PIL import Image

from mpq_assets.defs.study import StudyError, init_study, load_study
from mpq_assets.store import ResultsStore

BIN = Path(sys.executable).parent

AUDIO_YAML = """type: mpq_assets.defs.study.MpqExperiment
attributes:
  name: my_tones
  modality: audio
  dataset: audio_folder
  dataset_args: {root: ../../../tones}
  quality_metrics: [snr, si_sdr]
  codecs: [opus]
  ratios: [20x]
"""


def _study(root: Path) -> Path:
    folder = root / "my_study"
    init_study(folder, "my_photos")
    defs = folder / "my_study" / "defs"
    text = (defs / "my_photos" / "defs.yaml").read_text(encoding="utf-8")
    text = (text.replace("root: ../../../images", "root: ../../../photos")
            .replace("quality_metrics: [psnr, ssim, lpips_alex]", "quality_metrics: [psnr]")
            .replace("codecs: [jpeg, webp]", "codecs: [jpeg]").replace("ratios: [20x, 100x]", "ratios: [20x]"))
    (defs / "my_photos" / "defs.yaml").write_text(text, encoding="utf-8")
    (defs / "my_tones").mkdir()
    (defs / "my_tones" / "defs.yaml").write_text(AUDIO_YAML, encoding="utf-8")
    rng = np.random.default_rng(0)
    (folder / "photos").mkdir()
    for k in range(2):
        ramp = np.linspace(0, 255, 64 * 80).reshape(64, 80)
        pixels = np.stack([ramp, ramp[::-1], rng.integers(0, 255, (64, 80))], -1).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "photos" / f"photo_{k}.png")
    (folder / "tones").mkdir()
    t = np.arange(16_000 * 2) / 16_000
    for k, hz in enumerate((220.0, 330.0)):
        sf.write(folder / "tones" / f"tone_{k}.wav", (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16_000)
    return folder


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MPQ_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "MPQ_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def test_mpq_run_materialises_a_study_folder_on_a_fresh_instance(tmp_path: Path) -> None:
    folder = _study(tmp_path / "elsewhere")
    assert not folder.is_relative_to(Path(__file__).resolve().parents[1])
    assert set(load_study(folder)) == {"my_photos", "my_tones"}
    run = subprocess.run([str(BIN / "mpq"), "run", "--study", str(folder)], env=_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "== my_photos" in run.stdout and "== my_tones" in run.stdout
    store = ResultsStore(tmp_path / "home" / "mpq.duckdb")
    rows = store.query("SELECT experiment, codec, bitrate, count(*) AS n FROM compressed GROUP BY ALL ORDER BY 1")
    assert rows.values.tolist() == [["my_photos", "jpeg", "20x", 2], ["my_tones", "opus", "20x", 2]]
    quality = store.query("SELECT experiment, metric, count(*) AS n FROM quality GROUP BY ALL ORDER BY 1, 2")
    assert quality.values.tolist() == [["my_photos", "psnr", 2], ["my_tones", "si_sdr", 2], ["my_tones", "snr", 2]]
    agreement = store.query("SELECT count(*) AS n FROM task_scores WHERE experiment = 'my_photos' AND metric = "
                            "'agreement' AND item_id IS NOT NULL")["n"][0]
    assert agreement == 2  # EfficientNet-Lite0 from its wheel, on both photos
    os.environ["DAGSTER_HOME"], before = str(tmp_path / "dagster_home"), os.environ.get("DAGSTER_HOME")
    try:
        with DagsterInstance.get() as instance:  # the runs and partitions the UI would show
            assert "jpeg" in instance.get_dynamic_partitions("image_codecs")
            assert len(instance.get_runs()) >= 6  # unpartitioned + one partition + analyses, per experiment
    finally:
        if before is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = before
    listed = subprocess.run([str(BIN / "dagster"), "asset", "list", "-m", "my_study.definitions", "-d", str(folder)],
                            env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert {"my_photos/compressed", "my_tones/quality", "my_photos/report"} <= set(listed.stdout.split())
    # the workspace file `mpq init` wrote loads from any directory (dagster dev -w DIR/workspace.yaml)
    valid = subprocess.run([str(BIN / "dagster"), "definitions", "validate", "-w", str(folder / "workspace.yaml")],
                           env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert valid.returncode == 0, valid.stdout[-2000:] + valid.stderr[-2000:]


@pytest.mark.fast
def test_a_bad_field_names_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    init_study(folder, "photos")
    yaml = folder / "study" / "defs" / "photos" / "defs.yaml"
    good = yaml.read_text(encoding="utf-8")
    yaml.write_text(good.replace("modality: image ", "modality: imag  "), encoding="utf-8")
    with pytest.raises(StudyError, match=rf"{yaml}:6: attributes.modality: Input should be 'image' or 'audio'"):
        load_study(folder)
    yaml.write_text(good.replace("[psnr, ssim, lpips_alex]", "[psnr, sim]"), encoding="utf-8")
    with pytest.raises(StudyError, match=rf"{yaml}:15: attributes.quality_metrics: unknown 'sim'"):
        load_study(folder)
    with pytest.raises(FileExistsError):
        init_study(folder, "photos")


@pytest.mark.fast
def test_builtin_experiments_are_declared_like_a_study(tmp_path: Path) -> None:
    import yaml

    from mpq_assets.defs.study import MpqExperiment
    from mpq_assets.experiments import EXPERIMENTS
    from mpq_assets.experiments.declaration import load_declaration

    folder = Path(__file__).resolve().parents[1] / "mpq_assets" / "experiments" / "builtin"
    files = sorted(folder.glob("*.yaml"))
    assert {p.stem for p in files} == set(EXPERIMENTS) and len(files) >= 12
    for path in files:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert document["type"] == "mpq_assets.defs.study.MpqExperiment"
        component = MpqExperiment.model_validate(document["attributes"])  # the study component's own schema
        assert component.experiment(path.parent) == EXPERIMENTS[path.stem] == load_declaration(path)
    broken = tmp_path / "broken.yaml"
    broken.write_text((folder / "demo_speech.yaml").read_text(encoding="utf-8").replace("  dataset: demo_speech",
                                                                                      "  datset: demo_speech"))
    with pytest.raises(StudyError, match=rf"{broken}:\d+: attributes.datset: Extra inputs are not permitted"):
        load_declaration(broken)
