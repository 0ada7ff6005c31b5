"""The weights layer: hash checks, safe loads, the one restricted unpickler, the per-process model cache."""

from __future__ import annotations

import io
import os
import pickle
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from mpq_assets.weights import MODEL_CACHE, ModelCache, ModelNotAvailableError, UnsafeCheckpointError, WeightSource
from mpq_assets.weights.files import hash_prefix, matches, sha256_file, verify
from mpq_assets.weights.safe_load import load_checkpoint, read_safetensors, state_dict, write_safetensors
from mpq_assets.weights.unpickle import Opaque, RestrictedUnpickler, load_pickle, load_torch_restricted, numpy_arrays

pytestmark = pytest.mark.fast  # the `make check` tier


class _Calls:
    """A pickle that calls ``os.getcwd`` on load: how a malicious checkpoint runs code."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return os.getcwd, ()


class TrainingArgs:  # pickled by reference: the loader must not import or call it
    def __init__(self) -> None:
        self.regime, self.lr = "low", 1e-4


def test_hash_prefix_follows_the_torch_hub_names(tmp_path: Path) -> None:
    assert hash_prefix("mbt2018-1-3f36cd77.pth.tar") == "3f36cd77"
    assert hash_prefix("encodec_24khz-d7cc33bc.th") == "d7cc33bc"
    assert hash_prefix("hific_low.pt") is None and hash_prefix("model-xyz.th") is None
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    digest = sha256_file(f)
    assert matches(f, digest[:8]) and matches(f, digest) and matches(f, None)
    assert not matches(f, "00000000") and not matches(tmp_path / "absent", None)
    assert verify(f, digest[:10]) == f
    with pytest.raises(ModelNotAvailableError, match=r"does not match the SHA-256 prefix 00000000.*fetch it again"):
        verify(f, "00000000", "Run `mpq models pull x`.")
    with pytest.raises(ModelNotAvailableError, match=r"absent is missing\. Run"):
        verify(tmp_path / "absent", None, "Run `mpq models pull x`.")


def test_load_checkpoint_reads_tensors_and_refuses_code(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"w": torch.arange(3.0)}}, good)
    assert torch.equal(state_dict(load_checkpoint(good), good)["w"], torch.arange(3.0))
    bad = tmp_path / "bad.pt"
    torch.save({"w": torch.zeros(1), "hook": _Calls()}, bad)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load .*bad\.pt: the test model"):
        load_checkpoint(bad, "test model")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:40])
    with pytest.raises(ModelNotAvailableError, match=r"cannot read the checkpoint .*cut\.pt"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(ModelNotAvailableError, match="is not a state dict"):
        state_dict([1, 2], good)


def test_safetensors_written_atomically_with_metadata(tmp_path: Path) -> None:
    target = tmp_path / "m" / "x.safetensors"
    write_safetensors(target, {"a": torch.ones(2, 2)}, {"source_sha256": "ab"})
    tensors, metadata = read_safetensors(target)
    assert torch.equal(tensors["a"], torch.ones(2, 2)) and metadata == {"source_sha256": "ab"}
    assert [p.name for p in target.parent.iterdir()] == ["x.safetensors"]
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ModelNotAvailableError, match="cannot read the safetensors file"):
        read_safetensors(tmp_path / "junk.safetensors")


def test_restricted_unpickler_resolves_only_its_allow_list() -> None:
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    loaded = load_pickle(io.BytesIO(pickle.dumps(arrays, protocol=3)), numpy_arrays())
    np.testing.assert_array_equal(loaded["a"], arrays["a"])
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.getcwd"):
        load_pickle(io.BytesIO(pickle.dumps(_Calls())), numpy_arrays())
    # opaque: unknown classes become inert records; calling one (how code would run) is refused
    record = RestrictedUnpickler(io.BytesIO(pickle.dumps(TrainingArgs())), {}, opaque=True).load()
    assert isinstance(record, Opaque) and record.state == {"regime": "low", "lr": 1e-4}
    with pytest.raises(pickle.UnpicklingError, match="refusing to call posix.getcwd"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(_Calls())), {}, opaque=True).load()


def test_torch_load_restricted_keeps_tensors_and_neuters_classes(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"model_state_dict": OrderedDict(w=torch.arange(4.0)), "args": TrainingArgs()}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    data = load_torch_restricted(path)
    assert torch.equal(data["model_state_dict"]["w"], torch.arange(4.0))
    assert isinstance(data["args"], Opaque) and data["args"].state["regime"] == "low"
    torch.save({"w": torch.zeros(1), "hook": _Calls()}, path)
    with pytest.raises(pickle.UnpicklingError, match="refusing to call"):
        load_torch_restricted(path)


def test_model_cache_loads_each_key_once_and_other_keys_concurrently() -> None:
    cache, calls, started = ModelCache(), [], threading.Barrier(2, timeout=5)

    def slow(key: str) -> str:
        calls.append(key)
        if key != "a":
            started.wait()  # both distinct keys are loading at the same time: no global lock
        time.sleep(0.05)
        return key.upper()

    threads = [threading.Thread(target=lambda k=k: cache.get(("t", k), lambda: slow(k))) for k in "bbcc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(calls) == ["b", "c"] and cache.get(("t", "b"), lambda: "never") == "B" and len(cache) == 2
    with pytest.raises(ValueError):
        cache.get(("u", 1), lambda: (_ for _ in ()).throw(ValueError("boom")))
    assert ("u", 1) not in cache and cache.get(("u", 1), lambda: 7) == 7  # a failed load is retried
    cache.clear("t")
    assert cache.keys() == [("u", 1)]
    assert isinstance(MODEL_CACHE, ModelCache)


def test_weight_source_pull_and_kinds(tmp_path: Path) -> None:
    shipped = WeightSource("x", "package", "test", "pkg (PyPI)", locate=lambda s: (True, "/site/x"))
    assert shipped.pull(None) == "/site/x"  # type: ignore[arg-type]
    absent = WeightSource("y", "package", "test", "pkg (PyPI)", locate=lambda s: (False, "pkg"))
    with pytest.raises(FileNotFoundError, match="y: pkg is not installed"):
        absent.pull(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown kind 'zoo'"):
        WeightSource("z", "zoo", "test", "", locate=lambda s: (True, ""))  # type: ignore[arg-type]
