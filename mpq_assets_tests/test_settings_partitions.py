"""Settings from the environment, and the codec x bitrate partition definitions."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DynamicPartitionsDefinition, MultiPartitionsDefinition, StaticPartitionsDefinition

from mpq_assets.codecs import RATIOS, codec_names, parse_ratio
from mpq_assets.defs.partitions import codec_bitrate_partitions, partition_key, split_key
from mpq_assets.defs.sensors import missing_codec_partitions
from mpq_assets.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.fast  # the `make check` tier


def test_settings_defaults_and_overrides(tmp_path: Path) -> None:
    s = load_settings({})
    assert s.home == REPO_ROOT / "data"
    assert s.db_path == REPO_ROOT / "data" / "mpq.duckdb"
    assert s.device == "auto" and s.offline is False
    s = load_settings({"MPQ_HOME": str(tmp_path), "MPQ_DEVICE": "cpu", "MPQ_OFFLINE": "1",
                       "MPQ_DB": str(tmp_path / "x.duckdb")})
    assert s.artifacts_dir == tmp_path / "artifacts"
    assert s.models_dir == tmp_path / "models"
    assert s.db_path == tmp_path / "x.duckdb"
    assert s.device == "cpu" and s.offline is True


def test_settings_read_every_variable_the_package_uses(tmp_path: Path) -> None:
    s = load_settings({"MPQ_WORKERS": "3", "MPQ_COMPRESSAI_WEIGHTS": str(tmp_path / "cai"),
                       "MPQ_ENCODEC_WEIGHTS": str(tmp_path / "enc"), "MPQ_MUSDB_ROOT": str(tmp_path / "musdb"),
                       "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert (s.workers, s.compressai_weights, s.encodec_weights, s.musdb_root) == (
        "3", tmp_path / "cai", tmp_path / "enc", tmp_path / "musdb")
    assert s.hub_offline and not s.offline and s.hf_hub_cache == tmp_path / "hf" / "hub"
    assert s.hf_datasets_cache == tmp_path / "hf" / "datasets" and s.whisper_cache == tmp_path / "xdg" / "whisper"
    # huggingface_hub's own rule: HF_HUB_CACHE over HF_HOME over $XDG_CACHE_HOME/huggingface
    xdg = load_settings({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert xdg.hf_hub_cache == tmp_path / "xdg" / "huggingface" / "hub"
    assert load_settings({"HF_HUB_CACHE": str(tmp_path / "c"), "HF_HOME": "x"}).hf_hub_cache == tmp_path / "c"
    bare = load_settings({})
    assert bare.workers is None and bare.compressai_weights is None and not bare.hub_offline
    assert bare.musdb_root == REPO_ROOT / "data" / "musdb18hq"


def test_partitions_are_codec_by_bitrate() -> None:
    for modality in ("image", "audio"):
        p = codec_bitrate_partitions(modality)
        assert isinstance(p, MultiPartitionsDefinition)
        dims = {d.name: d.partitions_def for d in p.partitions_defs}
        assert isinstance(dims["codec"], DynamicPartitionsDefinition)
        assert dims["codec"].name == f"{modality}_codecs"
        assert isinstance(dims["bitrate"], StaticPartitionsDefinition)
        assert dims["bitrate"].get_partition_keys() == ["20x", "50x", "100x", "200x", "500x", "1000x"]
    key = partition_key("jpeg", "100x")
    assert key == "100x|jpeg"
    assert split_key("image", key) == ("jpeg", "100x")


def test_ratios_parse() -> None:
    assert [parse_ratio(r) for r in RATIOS] == [20, 50, 100, 200, 500, 1000]
    for bad in ("100", "x", "0.5x", "abcx"):
        with pytest.raises(ValueError):
            parse_ratio(bad)


def test_sensor_requests_only_missing_registry_codecs() -> None:
    reqs = missing_codec_partitions({"image_codecs": ["jpeg"], "audio_codecs": []})
    by_name = {r.partitions_def_name: list(r.partition_keys) for r in reqs}
    assert "jpeg" not in by_name["image_codecs"]
    assert set(by_name["image_codecs"]) == set(codec_names("image")) - {"jpeg"}
    assert set(by_name["audio_codecs"]) == set(codec_names("audio"))
    full = {"image_codecs": codec_names("image"), "audio_codecs": codec_names("audio")}
    assert missing_codec_partitions(full) == []


def test_codec_batch_size_follows_the_device_and_the_setting(monkeypatch) -> None:  # noqa: ANN001
    import torch

    from mpq_assets.codecs.batching import shape_batches
    from mpq_assets.device import codec_batch_size, parse_codec_batch

    monkeypatch.delenv("MPQ_CODEC_BATCH", raising=False)
    assert codec_batch_size(torch.device("cpu")) == 1 and codec_batch_size(torch.device("cuda")) == 8
    monkeypatch.setenv("MPQ_CODEC_BATCH", "3")
    chosen = parse_codec_batch(load_settings().codec_batch)
    assert codec_batch_size(torch.device("cpu"), chosen) == 3 == codec_batch_size(torch.device("cuda"), chosen)
    monkeypatch.setenv("MPQ_CODEC_BATCH", "zero")
    with pytest.raises(ValueError, match="MPQ_CODEC_BATCH='zero' must be a whole number >= 1"):
        parse_codec_batch(load_settings().codec_batch)
    assert shape_batches(["a", "b", "a", "a", "b"], 2) == [[0, 2], [3], [1, 4]]
    with pytest.raises(ValueError, match="batch_size"):
        shape_batches(["a"], 0)


def test_loading_the_code_location_does_not_warn_about_backfill_policy() -> None:
    import warnings

    from mpq_assets.definitions import build_definitions

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        defs = build_definitions()
    assert defs.assets and not [w for w in caught if "backfill_policy" in str(w.message)]
