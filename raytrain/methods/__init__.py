"""Training methods as objectives: ``build_objective(cfg)``, ``retrieval_model(objective)`` and the
train batch columns a method needs from the data workers (``data_columns(cfg)``)."""

from raytrain.methods.objective import build_objective, retrieval_model
from raytrain.methods.objective import random_mask_columns as data_columns

__all__ = ["build_objective", "data_columns", "retrieval_model"]
