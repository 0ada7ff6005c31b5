"""``mpq models``: where each model's weights live, and pulling what works offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpq_assets.cli import main
from mpq_assets.model_cache import MODELS, location, pull

pytestmark = pytest.mark.fast  # the `make check` tier


def test_list_reports_cache_state(mpq_home: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["models"]) == 0
    lines = {line.split()[1]: line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == set(MODELS)
    assert lines["efficientnet-lite0"] == "cached" and lines["tiny.en-ct2"] == "cached"  # shipped on PyPI
    assert lines["tiny"] == "missing" and lines["htdemucs"] == "missing"
    (tmp_path / "xdg" / "whisper").mkdir(parents=True)
    (tmp_path / "xdg" / "whisper" / "tiny.pt").write_bytes(b"x")
    assert location("tiny") == (True, str(tmp_path / "xdg" / "whisper" / "tiny.pt"))
    assert location("htdemucs")[1].endswith("checkpoints/955717e8-8726e21a.th")


def test_pull_converts_lpips_offline(mpq_home: Path) -> None:
    assert not location("lpips_alex")[0]
    path = pull("lpips_alex")
    assert Path(path).is_file() and path.endswith("alex.safetensors")
    assert location("lpips_alex") == (True, path)


def test_pull_unknown_or_unreachable_says_why(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    assert main(["models", "pull", "nope"]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    # our machines reach no model hub: the download fails and the message says what to do
    assert main(["models", "pull", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "could not fetch tiny" in err and "copy the cache folder" in err
