"""Models split across packages: joined once, hash-checked before use; Whisper base from its two real parts."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from mpq_assets.media.audio import load_audio
from mpq_assets.settings import REPO_ROOT
from mpq_assets.tasks.base import ModelNotAvailableError
from mpq_assets.tasks.speech import BASE_PARTS, CT2_BASE, SpeechRecognition
from mpq_assets.weights.joined import SplitModel, joined_folder


def _packages(root: Path, parts: list[bytes]) -> SplitModel:
    """Two importable packages holding the parts, and a config beside the second."""
    for k, data in enumerate(parts, 1):
        pkg = root / f"mpq_part_pkg_{k}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("", encoding="utf-8")
        (pkg / "data" / f"model.bin.part{k}").write_bytes(data)
    (root / "mpq_part_pkg_2" / "data" / "config.json").write_text("{}", encoding="utf-8")
    whole = b"".join(parts)
    return SplitModel("toy", "model.bin", (("mpq_part_pkg_1", "data/model.bin.part1"),
                                           ("mpq_part_pkg_2", "data/model.bin.part2")),
                      (("mpq_part_pkg_2", "data/config.json"),), len(whole), hashlib.sha256(whole).hexdigest())


@pytest.mark.fast
def test_parts_join_into_a_checked_folder_and_a_replaced_file_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = _packages(tmp_path / "site", [b"a" * 3000, b"b" * 1000])
    folder = joined_folder(model, tmp_path / "models")
    assert (folder / "model.bin").read_bytes() == b"a" * 3000 + b"b" * 1000
    assert (folder / "config.json").is_file() and not list(folder.glob(".*tmp"))
    (folder / "model.bin").write_bytes(b"a" * 3000 + b"c" * 1000)  # same size, other bytes
    with pytest.raises(ModelNotAvailableError, match="does not match the SHA-256"):
        joined_folder(model, tmp_path / "models")
    for name in [n for n in sys.modules if n.startswith("mpq_part_pkg")]:
        del sys.modules[name]


@pytest.mark.fast
def test_a_truncated_part_never_reaches_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    good = _packages(tmp_path / "site", [b"a" * 3000, b"b" * 1000])
    (tmp_path / "site" / "mpq_part_pkg_2" / "data" / "model.bin.part2").write_bytes(b"b" * 999)
    with pytest.raises(ModelNotAvailableError, match="3,999 bytes.*expected 4,000"):
        joined_folder(good, tmp_path / "models")
    assert not (tmp_path / "models" / "toy" / "model.bin").exists()
    assert not list((tmp_path / "models" / "toy").glob(".*"))
    missing = SplitModel("gone", "model.bin", (("mpq_no_such_package", "x"),), (), 1, "0" * 64)
    with pytest.raises(ModelNotAvailableError, match="pip install mpq-no-such-package"):
        joined_folder(missing, tmp_path / "models")


def test_whisper_base_joins_from_its_packages_and_transcribes(settings) -> None:
    folder = joined_folder(BASE_PARTS, settings.models_dir)
    assert (folder / "model.bin").stat().st_size == BASE_PARTS.size
    task = SpeechRecognition(model=CT2_BASE, beam_size=1, settings=settings)
    clip = load_audio(REPO_ROOT / "data" / "demo_speech" / "s02_awb.flac")
    (pred,) = task.predict([clip])
    assert pred.summary["normalized"] == "please water the tomato plants before you leave this weekend"
    assert task.model_id == CT2_BASE
