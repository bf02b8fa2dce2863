"""Training: a Lightning module around any registry model, configs, callbacks, checkpoints.

``equigraph train CONFIG.yaml`` (:mod:`equigraph.cli`) is :func:`fit` on a YAML file.
"""
from equigraph.train.callbacks import EpochTimer, LearningCurve, NonFiniteLoss, NonFiniteLossError
from equigraph.train.config import apply_overrides, load_config, parse_override
from equigraph.train.data import DATASETS, DataSplits, PropertyDataModule, build_splits, register_dataset
from equigraph.train.module import PropertyModule, mean_baseline_mae, target_statistics
from equigraph.train.plotting import plot_learning_curve, read_metrics
from equigraph.train.run import (
    FitResult,
    build_module,
    build_trainer,
    evaluate,
    fit,
    load_checkpoint,
    predict_molecules,
)

__all__ = [
    "DATASETS",
    "DataSplits",
    "EpochTimer",
    "FitResult",
    "LearningCurve",
    "NonFiniteLoss",
    "NonFiniteLossError",
    "PropertyDataModule",
    "PropertyModule",
    "apply_overrides",
    "build_module",
    "build_splits",
    "build_trainer",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_config",
    "mean_baseline_mae",
    "parse_override",
    "plot_learning_curve",
    "read_metrics",
    "predict_molecules",
    "register_dataset",
    "target_statistics",
]
