"""Deterministic training of a recipe's head on fixed features, and trained models as safetensors files.

Reproducibility: ``fit`` seeds its own RNG scope (``torch.random.fork_rng``, so the caller's global RNG is left
as it was) and a dedicated generator for the batch order, and turns on ``torch.use_deterministic_algorithms``.
On CPU the same seed, data, torch version and thread count give bit-identical weights (the ``sha256`` of the
tensors is the check). A different number of intra-op threads may reorder float reductions, and on CUDA
bit-identity also needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before the process starts and the same GPU model;
results across devices agree to float tolerance only.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpq_assets.training.recipes import Recipe, make_recipe


@dataclass
class TrainedModel:
    """A trained head with what is needed to use and identify it."""

    config: dict[str, Any]               # the recipe's config (name, hyper-parameters, backbone)
    classes: list[str]
    feature_shape: tuple[int, ...]
    state: dict[str, torch.Tensor]
    seed: int
    curve: list[dict[str, float]] = field(default_factory=list)  # per epoch: loss, train_accuracy
    wall_s: float = 0.0

    @property
    def sha256(self) -> str:
        return state_hash(self.state)

    def module(self, recipe: Recipe | None = None) -> nn.Module:
        """The head with these weights, in eval mode."""
        recipe = recipe or recipe_of(self)
        head = recipe.head(self.feature_shape, len(self.classes))
        head.load_state_dict(self.state, strict=True)
        return head.eval()


def recipe_of(model: TrainedModel) -> Recipe:
    """The recipe a model was trained with, rebuilt from its stored config (hyper-parameters, backbone)."""
    return make_recipe(model.config["recipe"], **{k: v for k, v in model.config.items() if k != "recipe"})


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes in name order (not the file: its header may
    order keys differently)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fit(recipe: Recipe, features: torch.Tensor, labels: Sequence[str], classes: Sequence[str], *, seed: int,
        device: torch.device | str = "cpu") -> TrainedModel:
    """Train ``recipe``'s head on ``features`` (n, ...) with string ``labels`` from ``classes``: AdamW with a
    one-cycle learning rate (warm up, then anneal: the last epochs settle instead of jumping between minima,
    which keeps the spread over seeds small), cross entropy, mini-batches in a seeded order."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    if len(labels) != len(features) or len(labels) == 0:
        raise ValueError(f"{len(features)} feature rows for {len(labels)} labels: need the same, and some")
    device = torch.device(device)
    hyper = recipe.hyper
    y = torch.tensor([index[lab] for lab in labels], device=device)
    x = features.to(device)
    started = time.perf_counter()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            head = recipe.head(tuple(x.shape[1:]), len(classes)).to(device)
            order = torch.Generator().manual_seed(seed)
            opt = torch.optim.AdamW(head.parameters(), lr=hyper.lr, weight_decay=hyper.weight_decay)
            steps = hyper.epochs * -(-len(y) // hyper.batch_size)
            schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hyper.lr, total_steps=steps)
            curve = []
            for epoch in range(hyper.epochs):
                head.train()
                perm = torch.randperm(len(y), generator=order).to(device)
                total, correct = 0.0, 0
                for start in range(0, len(y), hyper.batch_size):
                    batch = perm[start:start + hyper.batch_size]
                    logits = head(x[batch])
                    loss = nn.functional.cross_entropy(logits, y[batch])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    schedule.step()
                    total += float(loss.detach()) * len(batch)
                    correct += int((logits.argmax(dim=1) == y[batch]).sum())
                curve.append({"epoch": epoch + 1, "loss": total / len(y), "train_accuracy": correct / len(y)})
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
    return TrainedModel(recipe.config(), list(classes), tuple(x.shape[1:]), state, seed, curve,
                        time.perf_counter() - started)


def predict(model: TrainedModel, features: torch.Tensor, recipe: Recipe | None = None) -> torch.Tensor:
    """Class probabilities (n, classes) of the trained head on ``features``."""
    head = model.module(recipe)
    with torch.inference_mode():
        return torch.softmax(head(features.float()), dim=1)


def save(model: TrainedModel, path: Path) -> Path:
    """The weights as safetensors, the rest in its string metadata; written atomically."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"config": json.dumps(model.config, sort_keys=True), "classes": json.dumps(model.classes),
            "feature_shape": json.dumps(list(model.feature_shape)), "seed": str(model.seed),
            "curve": json.dumps(model.curve), "wall_s": repr(model.wall_s), "sha256": model.sha256}
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state.items()}, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load(path: Path) -> TrainedModel:
    """A trained model from its safetensors file (no pickle); the tensor hash must match the recorded one."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    missing = [k for k in ("config", "classes", "feature_shape", "seed") if k not in meta]
    if missing:
        raise ValueError(f"{path}: not an MPQ trained model (metadata lacks {', '.join(missing)})")
    model = TrainedModel(json.loads(meta["config"]), json.loads(meta["classes"]),
                         tuple(json.loads(meta["feature_shape"])), state, int(meta["seed"]),
                         json.loads(meta.get("curve", "[]")), float(meta.get("wall_s", "0")))
    if meta.get("sha256") and meta["sha256"] != model.sha256:
        raise ValueError(f"{path}: tensors do not match their recorded sha256 (file damaged or edited)")
    return model
