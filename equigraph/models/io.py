"""Saving and loading a model as one file, without Lightning.

The file holds the registry spec the model was built from (:func:`equigraph.registry.spec_of`),
its weights and buffers (so the output scale, shift and per-element references travel with
it), and metadata the user path needs: the featuriser, the unit of each output, the
elements seen in training. ``equigraph predict`` and the ASE calculator read it and never
import :mod:`equigraph.train`; Lightning checkpoints stay for resuming training.

>>> import tempfile, os, torch
>>> from equigraph.models import build_model, save, load
>>> model = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1})
>>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
>>> _ = save(model, path, metadata={"units": {"y": "meV"}})
>>> again = load(path)
>>> again.metadata["units"], type(again).__name__
({'y': 'meV'}, 'EGNN')
>>> save(model, path)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: model file ... exists already; pass overwrite=True to replace it
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from equigraph.registry import spec_of

from .registry import build_model

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "equigraph-model"
FORMAT_VERSION = 1


def save(model: torch.nn.Module, path: Union[str, os.PathLike], *, metadata: Optional[Dict[str, Any]] = None,
         spec: Optional[Dict[str, Any]] = None, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` (one file: spec, weights, ``metadata``).

    Args:
        model (torch.nn.Module): a model built from a registry spec (:func:`build_model`,
            a config), or any registry model with ``spec=`` given.
        path (str or Path): the file to write; an existing file is an error unless
            ``overwrite=True`` (never lose a user's earlier model). Written atomically.
        metadata (dict, optional): plain data (str, numbers, lists, dicts): featuriser
            spec, units, elements, targets.
        spec (dict, optional): the registry spec, when ``model`` was built by hand.
        overwrite (bool, optional): replace an existing file. (default: :obj:`False`)
    """
    spec = spec if spec is not None else spec_of(model)
    if spec is None:
        raise ValueError(f"{type(model).__name__} was not built from a registry spec (build_model or a config): "
                         "pass spec={'name': ..., ...} so that load() can rebuild it")
    path = Path(path)
    if path.exists() and not overwrite:
        raise ValueError(f"model file {str(path)!r} exists already; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec, "state_dict": state,
              "metadata": dict(metadata or {})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(record, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """The model saved at ``path``, in eval mode, with its ``metadata`` dict attached.

    Raises:
        ValueError: the file is missing, is not an equigraph model file (a Lightning
            checkpoint is named as such), or does not fit the current model code.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError,
            ImportError, IndexError, TypeError) as err:
        # torch.load fails in many ways on a file that is not a torch archive.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{str(path)!r} is not an equigraph model file ({first[:120]})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        if isinstance(record, dict) and "pytorch-lightning_version" in record:
            raise ValueError(f"{str(path)!r} is a Lightning checkpoint, not a saved model: use the run's model.pt, "
                             "or equigraph.train.load_checkpoint for a checkpoint")
        raise ValueError(f"{str(path)!r} is not an equigraph model file (no {FORMAT!r} record)")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} was written by a newer equigraph (format {record['format_version']})")
    model = build_model(record["spec"])
    try:
        model.load_state_dict(record["state_dict"])
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise ValueError(f"{str(path)!r} does not fit the current model code: {detail}") from None
    dtypes = {v.dtype for v in record["state_dict"].values() if v.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtypes.pop())
    model.metadata = record.get("metadata", {})
    return model.eval()
