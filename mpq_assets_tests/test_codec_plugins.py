"""Third-party codecs join through the ``mpq.codecs`` entry-point group (docs/codecs.md's worked example)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mpq_assets.codecs import budget_bytes, codec_names, get_codec
from mpq_assets.defs.sensors import missing_codec_partitions
from mpq_assets.settings import REPO_ROOT

pytestmark = pytest.mark.fast  # the `make check` tier

EXAMPLE_SRC = REPO_ROOT / "examples" / "mpq_example_codec" / "src"


def install_entry_point(site: Path, dist: str, entry_points: str) -> None:
    """Make an installed-distribution record on ``site`` the way pip would (dist-info + entry_points.txt)."""
    info = site / f"{dist}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture()
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    install_entry_point(site, "mpq_example_codec",
                        "[mpq.codecs]\njpeg-half = mpq_example_codec:HalfResJpeg\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    yield site
    sys.modules.pop("mpq_example_codec", None)


def test_entry_point_codec_is_registered_and_works(plugin_site: Path) -> None:
    assert "jpeg-half" in codec_names("image")
    assert "jpeg-half" not in codec_names("audio")
    codec = get_codec("jpeg-half")
    import skimage.data

    photo = np.ascontiguousarray(skimage.data.astronaut()[::2, ::2])
    enc = codec.encode_to_budget(photo, budget_bytes(photo, 200))
    assert enc.rate_met and len(enc.data) <= budget_bytes(photo, 200)
    assert codec.decode(enc.data, like=photo).shape == photo.shape
    # the sensor would add it as a new image codec partition
    existing = {"image_codecs": [c for c in codec_names("image") if c != "jpeg-half"], "audio_codecs":
                codec_names("audio")}
    reqs = missing_codec_partitions(existing)
    assert [(r.partitions_def_name, list(r.partition_keys)) for r in reqs] == [("image_codecs", ["jpeg-half"])]


def test_broken_plugins_are_skipped_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "site"
    install_entry_point(site, "broken_codecs",
                        "[mpq.codecs]\nmissing = no_such_module:Codec\nnotacodec = json:dumps\n"
                        "dup = mpq_assets.codecs.image_pillow:Jpeg\n")
    monkeypatch.syspath_prepend(str(site))
    names = codec_names()
    assert {"jpeg", "webp", "mp3", "opus"} <= set(names)
    assert "missing" not in names and "notacodec" not in names
    text = caplog.text
    assert "no_such_module" in text and "not a subclass" in text and "already registered" in text


def test_unknown_codec_lists_known_names() -> None:
    with pytest.raises(KeyError, match="known codecs: .*jpeg"):
        get_codec("nope")
