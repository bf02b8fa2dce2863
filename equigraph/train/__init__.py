"""Training: a Lightning task module over declared targets, configs, callbacks, runs.

``equigraph train CONFIG.yaml`` (:mod:`equigraph.cli`) is :func:`fit` on a YAML file.
"""
from equigraph.train.callbacks import EpochTimer, LearningCurve, NonFiniteLoss, NonFiniteLossError
from equigraph.train.config import apply_overrides, load_config, parse_override
from equigraph.train.data import SplitsDataModule
from equigraph.train.module import TaskModule
from equigraph.train.plotting import plot_learning_curve, read_metrics
from equigraph.train.run import FitResult, build_trainer, evaluate, fit, load_checkpoint, mean_predictor_error, new_run_dir
from equigraph.train.targets import LOSSES, Target, fit_statistics, resolve_targets

__all__ = [
    "EpochTimer", "LearningCurve", "NonFiniteLoss", "NonFiniteLossError",
    "apply_overrides", "load_config", "parse_override",
    "SplitsDataModule", "TaskModule", "Target", "LOSSES", "fit_statistics", "resolve_targets",
    "plot_learning_curve", "read_metrics",
    "FitResult", "build_trainer", "evaluate", "fit", "load_checkpoint", "mean_predictor_error", "new_run_dir",
]
