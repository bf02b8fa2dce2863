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
#: ``data`` holds the loader keys below plus the options of the dataset named by
#: ``data.name`` (validated by its builder in :mod:`equigraph.datasets.registry`).
#: ``targets`` maps a target name to ``{output, key, loss, weight, metric_unit}``; empty means
#: every target the dataset declares (see :mod:`equigraph.train.targets`).
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "out_dir": "runs/default",
    "model": {},
    "data": {
        "name": "qm9",
        "batch_size": 96,
        "eval_batch_size": None,
        "num_workers": 0,
        "loader": "pyg",
        "pad_buckets": None,
    },
    "targets": {},
    "train": {
        "max_epochs": 100,
        "max_time": None,
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
        "fit_statistics": True,
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
        "compile": False,
        "matmul_precision": "highest",
    },
}

#: Expected type of each ``train`` / loader key: a wrong type is a one-line error naming it.
_TYPES: dict[str, tuple] = {
    "seed": (int,), "out_dir": (str,),
    "data.batch_size": (int,), "data.eval_batch_size": (int, type(None)), "data.num_workers": (int,),
    "data.loader": (str,), "data.pad_buckets": (int, float, type(None)),
    "train.max_epochs": (int,), "train.max_time": (str, dict, type(None)), "train.loss": (str,), "train.optimizer": (str,), "train.lr": (int, float),
    "train.weight_decay": (int, float), "train.scheduler": (str,), "train.plateau_factor": (int, float),
    "train.plateau_patience": (int,), "train.min_lr": (int, float), "train.ema_decay": (int, float, type(None)),
    "train.gradient_clip_val": (int, float, type(None)), "train.early_stopping_patience": (int, type(None)),
    "train.metric_unit": (str, type(None)), "train.fit_statistics": (bool,), "train.accelerator": (str,),
    "train.devices": (int, str, list), "train.num_nodes": (int,), "train.strategy": (str,),
    "train.precision": (str, int), "train.progress_bar": (bool,), "train.log_every_n_steps": (int,),
    "train.limit_train_batches": (int, float, type(None)), "train.check_val_every_n_epoch": (int,),
    "train.deterministic": (bool,), "train.num_threads": (int, type(None)),
    "train.compile": (bool, dict), "train.matmul_precision": (str,),
}


#: ``torch.set_float32_matmul_precision`` values: ``"high"`` allows TF32 matrix products on
#: GPUs that have them (faster, about 1e-3 relative error per product), ``"medium"`` bf16.
MATMUL_PRECISIONS = ("highest", "high", "medium")
#: Keys of ``train.compile`` when it is a mapping: passed to ``torch.compile``.
COMPILE_OPTIONS = ("mode", "dynamic", "fullgraph", "backend", "options")
#: ``data.loader``: ``"pyg"`` (PyG's DataLoader, collated on the host per batch) or
#: ``"device"`` (each split collated once and kept on the training device; batches are
#: gathered there, see :mod:`equigraph.train.device_loader`).
LOADERS = ("pyg", "device")


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


def _type_names(types: tuple) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
             dict: "a mapping", type(None): "null"}
    if float in types:  # an integer is a number
        types = tuple(t for t in types if t is not int)
    return " or ".join(dict.fromkeys(names[t] for t in types))


def validate_config(config: dict) -> dict:
    """Check the structure and the types that the trainer relies on; raise ``ValueError``
    naming the key and what is expected. The model's and the dataset's own options are
    checked by their registries when built."""
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"config: unknown top-level keys {sorted(unknown)}; expected {sorted(DEFAULTS)}")
    for section in ("model", "data", "train", "targets"):
        if not isinstance(config.get(section), dict):
            raise ValueError(f"config: section {section!r} must be a mapping, got {config.get(section)!r}")
    unknown_train = set(config["train"]) - set(DEFAULTS["train"])
    if unknown_train:
        raise ValueError(f"config: unknown train keys {sorted(unknown_train)}; see docs/training.md")
    if "name" not in config["model"]:
        raise ValueError("config: model.name is required (a name of equigraph.models.registry)")
    for dotted, types in _TYPES.items():
        node = config
        for part in dotted.split("."):
            node = node[part]
        ok = isinstance(node, types) and not (isinstance(node, bool) and bool not in types)
        if not ok:
            raise ValueError(f"config: {dotted} must be {_type_names(types)}, got {node!r}")
    train = config["train"]
    for key in ("max_epochs", "plateau_patience", "log_every_n_steps", "check_val_every_n_epoch", "num_nodes"):
        if train[key] < 1:
            raise ValueError(f"config: train.{key} must be a positive integer, got {train[key]!r}")
    for key in ("lr",):
        if not train[key] > 0:
            raise ValueError(f"config: train.{key} must be a positive number, got {train[key]!r}")
    if train["gradient_clip_val"] is not None and not train["gradient_clip_val"] > 0:
        raise ValueError(f"config: train.gradient_clip_val must be a positive number or null, got {train['gradient_clip_val']!r}")
    if isinstance(train["devices"], int) and train["devices"] < 1 and train["devices"] != -1:
        raise ValueError(f"config: train.devices must be a positive integer, -1, 'auto' or a list, got {train['devices']!r}")
    if isinstance(train["devices"], str) and train["devices"] != "auto":
        raise ValueError(f"config: train.devices must be a positive integer, -1, 'auto' or a list, got {train['devices']!r}")
    if train["accelerator"] not in ("auto", "cpu", "gpu", "cuda", "mps", "tpu"):
        raise ValueError(f"config: train.accelerator must be auto, cpu, gpu, cuda or mps, got {train['accelerator']!r}")
    if train["matmul_precision"] not in MATMUL_PRECISIONS:
        raise ValueError(f"config: train.matmul_precision must be one of {', '.join(MATMUL_PRECISIONS)}, "
                         f"got {train['matmul_precision']!r}")
    if isinstance(train["compile"], dict):
        unknown = set(train["compile"]) - set(COMPILE_OPTIONS)
        if unknown:
            raise ValueError(f"config: train.compile has unknown keys {sorted(unknown)}; expected some of "
                             f"{', '.join(COMPILE_OPTIONS)} (torch.compile's arguments)")
    if config["data"]["loader"] not in LOADERS:
        raise ValueError(f"config: data.loader must be one of {', '.join(LOADERS)}, got {config['data']['loader']!r}")
    pad = config["data"]["pad_buckets"]
    if pad is not None:
        if not 0 < pad <= 1:
            raise ValueError(f"config: data.pad_buckets must be a relative bucket step in (0, 1] or null, got {pad!r}")
        if config["data"]["loader"] != "device":
            raise ValueError("config: data.pad_buckets pads the batches of data.loader=device; "
                             f"data.loader is {config['data']['loader']!r}")
    if config["data"]["batch_size"] < 1:
        raise ValueError(f"config: data.batch_size must be a positive integer, got {config['data']['batch_size']!r}")
    for name, spec in config["targets"].items():
        if not isinstance(spec, dict):
            raise ValueError(f"config: targets.{name} must be a mapping (output, key, loss, weight, metric_unit), "
                             f"got {spec!r}")
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
            try:
                raw = _yaml(f.read()) or {}
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise ValueError(f"config file {str(path)!r}:{where}: YAML syntax error: {problem}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"config file {str(path)!r} must hold a mapping, got {type(raw).__name__}")
    raw = apply_overrides(raw, list(overrides))
    return validate_config(merge(DEFAULTS, raw))
