"""Training on compressed data: recipes (fixed features + a trainable head), deterministic training, trained
models as safetensors files. No Dagster here; the assets call these."""

from mpq_assets.training.recipes import RECIPES, Hyper, LinearProbe, MelCNN, Recipe, make_recipe
from mpq_assets.training.trainer import TrainedModel, fit, load, predict, save, state_hash

__all__ = ["RECIPES", "Hyper", "LinearProbe", "MelCNN", "Recipe", "TrainedModel", "fit", "load", "make_recipe",
           "predict", "save", "state_hash"]
