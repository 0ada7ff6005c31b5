"""Untrusted checkpoints: every loader refuses a pickle whose ``__reduce__`` would run code, and no
``torch.load`` / ``pickle.load`` in the package can run code outside the one restricted converter."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import torch

from mpq_assets.settings import REPO_ROOT
from mpq_assets.weights import UnsafeCheckpointError

PACKAGE = REPO_ROOT / "mpq_assets"
# the one place a pickle is read with more than weights_only: the restricted unpickler of the one-time conversions
CONVERTER = PACKAGE / "weights" / "unpickle.py"


class _Payload:
    """Pickles as a call to ``exec`` that writes the marker file: what a tampered checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.fixture()
def evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "model_state": {}, "payload": _Payload(marker)}, path)
    return path, marker


@pytest.mark.fast
def test_every_loader_refuses_a_checkpoint_that_runs_code(evil: tuple[Path, Path], monkeypatch) -> None:
    from mpq_assets.codecs import hific_model, neural_audio, neural_image
    from mpq_assets.tasks import classification, separation, speaker, speech
    from mpq_assets.training import trainer
    from mpq_assets.weights import MODEL_CACHE
    from mpq_assets.weights.safe_load import load_checkpoint
    from mpq_assets.weights.unpickle import load_torch_restricted

    path, marker = evil
    loaders = {
        "load_checkpoint": lambda: load_checkpoint(path, "checkpoint"),
        "whisper .pt": lambda: speech.load_whisper_checkpoint(path, torch.device("cpu")),
        "demucs .th": lambda: separation.load_th(path),
        "compressai": lambda: neural_image.load_checkpoint("mbt2018", 1, path),
        "encodec": lambda: neural_audio._load_state(path),
    }
    for name, load in loaders.items():
        with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
            load()
        assert not marker.exists(), f"{name} ran the checkpoint's code"
    # EfficientNet-Lite (its package's own from_pretrained would unpickle anything), pointed at the tampered file
    monkeypatch.setattr(classification, "_lite_weights", lambda model: path)
    with pytest.raises(UnsafeCheckpointError):
        classification._EfficientNetLite("efficientnet-lite0", torch.device("cpu"))
    # HiFiC's one-time conversion: weights_only first, then the restricted unpickler, which will not call exec
    with pytest.raises(pickle.UnpicklingError, match="refusing to call __builtin__.exec"):
        hific_model._read_checkpoint(path)
    assert not marker.exists()
    # the speaker encoder, pointed at the tampered file
    MODEL_CACHE.clear("resemblyzer")
    monkeypatch.setattr(speaker, "weights_path", lambda: path)
    with pytest.raises(UnsafeCheckpointError):
        speaker.load_encoder(torch.device("cpu"))
    MODEL_CACHE.clear("resemblyzer")
    # trained models are safetensors: a pickle under that name is not read at all
    with pytest.raises(Exception, match="deserializing header"):
        trainer.load(path)
    # the one-time converters' unpickler resolves only its allow-list: exec is not on it
    with pytest.raises(pickle.UnpicklingError, match="refusing to call __builtin__.exec"):
        load_torch_restricted(path)
    assert not marker.exists()


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>"
    return None


@pytest.mark.fast
def test_no_load_in_the_package_can_run_pickled_code() -> None:
    unsafe = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree):
            name, where = _name(call.func), f"{path.relative_to(REPO_ROOT)}:{call.lineno}"
            if name == "torch.load" and path != CONVERTER and _keyword(call, "weights_only") is not True:
                unsafe.append(f"{where}: torch.load without weights_only=True")
            if name == "torch.load" and path == CONVERTER and _keyword(call, "pickle_module") is None:
                unsafe.append(f"{where}: the converter's torch.load without its restricted pickle_module")
            if name in {"pickle.load", "pickle.loads", "dill.load", "joblib.load", "torch.hub.load"}:
                unsafe.append(f"{where}: {name}")
            if name in {"np.load", "numpy.load"} and _keyword(call, "allow_pickle") not in (None, False):
                unsafe.append(f"{where}: np.load with allow_pickle")
    assert not unsafe, "loads that can run code from a file:\n" + "\n".join(unsafe)
