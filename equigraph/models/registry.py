"""Maps configuration names (``"egnn"``, ...) to model constructors, so that the trainer and
the CLI build models from a config without naming a class. It is one
:class:`equigraph.registry.Registry`; nested specs (a wrapper's ``backbone`` or ``model``)
are built by the wrapper with :func:`build_model`.

Example:
    >>> from equigraph.models import build_model, available_models
    >>> "egnn" in available_models()
    True
    >>> model = build_model("egnn", hidden_channels=16, num_layers=2)
    >>> type(model).__name__
    'EGNN'
    >>> build_model({"name": "egnn", "hidden_channels": "16"})
    Traceback (most recent call last):
    ...
    ValueError: model 'egnn': hidden_channels must be int, got '16' (str)
"""
from __future__ import annotations

from typing import Any, List, Mapping, Union

import torch

from equigraph.registry import Registry

__all__ = ["MODELS", "register_model", "build_model", "available_models"]

#: The model registry.
MODELS = Registry("model")


def register_model(name: str):
    """Class (or factory) decorator registering a model constructor under ``name``.

    Raises:
        ValueError: if ``name`` is empty or already registered to another constructor.
    """
    return MODELS.register(name)


def build_model(spec: Union[str, Mapping[str, Any], torch.nn.Module], **kwargs) -> torch.nn.Module:
    """Build the model of ``spec`` (a registry name, ``{name: ..., **kwargs}``, or a module,
    returned as it is), with ``kwargs`` added.

    Raises:
        ValueError: for an unknown name (the message lists them), an argument the
            constructor does not take, or a value of the wrong type.
    """
    return MODELS.build(spec, **kwargs)


def available_models() -> List[str]:
    """Sorted names of the registered models."""
    return MODELS.names()
