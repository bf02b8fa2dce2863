"""YAML run configurations: loading, dotted ``key=value`` overrides and defaults.

A configuration has three sections that map onto constructors, so that a new model needs a
new config file and no trainer change:

- ``model``: keyword arguments of :func:`equigraph.models.registry.build_model`
  (``name`` picks the model);
- ``data``: the dataset (``name``), its target, split, subset sizes, featuriser and loader;
- ``train``: optimisation, schedule, callbacks and Lightning ``Trainer`` settings.

See ``docs/training.md`` for every key.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

#: Defaults merged under every configuration; a config file only states what differs.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "out_dir": "runs/default",
    "model": {},
    "data": {
        "name": "qm9",
        "root": None,
        "target": "gap",
        "split": "egnn",
        "max_train": None,
        "max_val": None,
        "max_test": None,
        "featurizer": None,
        "batch_size": 96,
        "eval_batch_size": None,
        "num_workers": 0,
    },
    "train": {
        "max_epochs": 100,
        "loss": "l1",
        "optimizer": "adamw",
        "lr": 5.0e-4,
        "weight_decay": 0.0,
        "scheduler": "cosine",
        "plateau_factor": 0.5,
        "plateau_patience": 10,
        "min_lr": 0.0,
        "ema_decay": None,
        "gradient_clip_val": None,
        "early_stopping_patience": None,
        "metric_unit": None,
        "accelerator": "auto",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "progress_bar": True,
        "log_every_n_steps": 50,
        "limit_train_batches": None,
        "check_val_every_n_epoch": 1,
        "deterministic": False,
        "num_threads": None,
    },
}


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; scientific notation without a dot is a float here."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=value"`` into ``(["a", "b", "c"], value)``, the value parsed as YAML.

    >>> parse_override("train.max_epochs=3")
    (['train', 'max_epochs'], 3)
    >>> parse_override("train.ema_decay=null")
    (['train', 'ema_decay'], None)
    >>> parse_override("data.target=gap")
    (['data', 'target'], 'gap')
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {text!r}: expected KEY=VALUE, e.g. train.max_epochs=3")
    path = key.split(".")
    if any(not part for part in path):
        raise ValueError(f"override {text!r}: empty component in the dotted key {key!r}")
    try:
        value = _yaml(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ValueError(f"override {text!r}: value {raw!r} is not valid YAML ({err})") from None
    return path, value


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """Return a copy of ``config`` with each ``"dotted.key=value"`` of ``overrides`` set.

    Intermediate sections are created when missing; setting a key inside a value that is not a
    mapping is an error.

    >>> apply_overrides({"train": {"lr": 1e-3}}, ["train.lr=5e-4", "model.hidden_channels=32"])
    {'train': {'lr': 0.0005}, 'model': {'hidden_channels': 32}}
    """
    out = copy.deepcopy(config)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                dotted = ".".join(path[: i + 1])
                raise ValueError(f"override {text!r}: {dotted!r} is {child!r}, not a section")
            node = child
        node[path[-1]] = value
    return out


def merge(base: dict, update: dict) -> dict:
    """Recursive dictionary merge: ``update`` wins, sections are merged key by key."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_config(config: dict) -> dict:
    """Check the structure that the trainer relies on; raise ``ValueError`` naming the key."""
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"config: unknown top-level keys {sorted(unknown)}; expected {sorted(DEFAULTS)}")
    for section in ("model", "data", "train"):
        if not isinstance(config.get(section), dict):
            raise ValueError(f"config: section {section!r} must be a mapping, got {config.get(section)!r}")
    unknown_train = set(config["train"]) - set(DEFAULTS["train"])
    if unknown_train:
        raise ValueError(f"config: unknown train keys {sorted(unknown_train)}; see docs/training.md")
    unknown_data = set(config["data"]) - set(DEFAULTS["data"])
    if unknown_data:
        raise ValueError(f"config: unknown data keys {sorted(unknown_data)}; see docs/training.md")
    if "name" not in config["model"]:
        raise ValueError("config: model.name is required (a name of equigraph.models.registry)")
    train = config["train"]
    if not isinstance(train["max_epochs"], int) or train["max_epochs"] < 1:
        raise ValueError(f"config: train.max_epochs must be a positive integer, got {train['max_epochs']!r}")
    if not isinstance(train["lr"], (int, float)) or not train["lr"] > 0:
        raise ValueError(f"config: train.lr must be a positive number, got {train['lr']!r}")
    batch = config["data"]["batch_size"]
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"config: data.batch_size must be a positive integer, got {batch!r}")
    return config


def load_config(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read a YAML file (or take a mapping), apply ``overrides``, merge the defaults, validate.

    >>> cfg = load_config({"model": {"name": "egnn"}}, ["train.max_epochs=3"])
    >>> cfg["train"]["max_epochs"], cfg["data"]["batch_size"]
    (3, 96)
    """
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        with open(path) as f:
            raw = _yaml(f.read()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"config file {str(path)!r} must hold a mapping, got {type(raw).__name__}")
    raw = apply_overrides(raw, list(overrides))
    return validate_config(merge(DEFAULTS, raw))
