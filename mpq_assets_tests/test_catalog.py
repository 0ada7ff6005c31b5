"""``mpq models``: the catalogue built from the components' weight sources, where each lives, pulling offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpq_assets.catalog import location, pull, sources
from mpq_assets.cli import main

pytestmark = pytest.mark.fast  # the `make check` tier


def test_list_reports_cache_state(mpq_home: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["models"]) == 0
    lines = {line.split()[1]: line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == set(sources())
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


EXPECTED_KINDS = {
    "google/vit-base-patch16-224": "hub", "nateraw/vit-base-beans": "hub",
    "nvidia/segformer-b0-finetuned-ade-512-512": "hub",
    **{n: "download" for n in ("tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
                               "large-v3", "htdemucs", "hdemucs_mmi", "mbt2018", "cheng2020-anchor",
                               "encodec-24khz", "encodec-48khz")},
    **{f"hific-{r}": "file" for r in ("low", "med", "high")},
    "lpips_alex": "conversion", "lpips_vgg": "conversion", "cdpam": "conversion",
    "efficientnet-lite0": "package", "efficientnet-lite1": "package", "efficientnet-lite2": "package",
    "tiny.en-ct2": "package", "dnsmos": "package", "base-ct2": "package", "basic-pitch": "package",
    "resemblyzer": "package", "tesseract-eng": "package",
}


def test_catalogue_is_what_the_components_declare() -> None:
    assert {name: source.kind for name, source in sources().items()} == EXPECTED_KINDS


def test_a_plugin_codec_brings_its_weights_into_mpq_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    info = site / "mpq_weights_plugin-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mpq_weights_plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[mpq.codecs]\njpeg-net = mpq_weights_plugin:NetJpeg\n")
    weights = tmp_path / "net.safetensors"
    (site / "mpq_weights_plugin.py").write_text(
        "from mpq_assets.codecs.image_pillow import Jpeg\n"
        "from mpq_assets.weights import WeightSource\n"
        "from pathlib import Path\n"
        f"WEIGHTS = Path({str(weights)!r})\n"
        "class NetJpeg(Jpeg):\n"
        "    name = 'jpeg-net'\n"
        "    weight_sources = (WeightSource('jpeg-net-weights', 'file', 'a plugin post-filter', 'placed by hand',\n"
        "                                   locate=lambda s: (WEIGHTS.is_file(), str(WEIGHTS))),)\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        assert location("jpeg-net-weights") == (False, str(weights))
        weights.write_bytes(b"x")
        assert main(["models"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if "jpeg-net-weights" in x)
        assert line.split()[:3] == ["cached", "jpeg-net-weights", "file"] and str(weights) in line
    finally:
        import sys

        sys.modules.pop("mpq_weights_plugin", None)
