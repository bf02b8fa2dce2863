"""Maps configuration names (``"egnn"``, ...) to model constructors, so that the trainer and
the CLI build models from a config without naming a class.

Example:
    >>> from equigraph.models import build_model, available_models
    >>> "egnn" in available_models()
    True
    >>> model = build_model("egnn", hidden_channels=16, num_layers=2)
    >>> type(model).__name__
    'EGNN'
"""
from __future__ import annotations

from typing import Callable, Dict, List

import torch

__all__ = ["register_model", "build_model", "available_models"]

_MODELS: Dict[str, Callable[..., torch.nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Class (or factory) decorator registering a model constructor under ``name``.

    Raises:
        ValueError: if ``name`` is empty or already registered to another constructor.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    key = name.lower()

    def decorator(constructor):
        existing = _MODELS.get(key)
        if existing is not None and existing is not constructor:
            raise ValueError(f"model name {name!r} is already registered to {existing!r}")
        _MODELS[key] = constructor
        return constructor

    return decorator


def build_model(name: str, **kwargs) -> torch.nn.Module:
    """Build the model registered as ``name`` (case-insensitive) with ``kwargs``.

    Raises:
        ValueError: if no model is registered under ``name`` (the message lists them), or
            if ``kwargs`` has an argument the constructor does not take.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    try:
        return _MODELS[key](**kwargs)
    except TypeError as err:
        # A misspelt config key surfaces as a TypeError deep in __init__; name the model.
        if "unexpected keyword argument" in str(err):
            raise ValueError(f"model {name!r}: {err}") from err
        raise


def available_models() -> List[str]:
    """Sorted names of the registered models."""
    return sorted(_MODELS)
