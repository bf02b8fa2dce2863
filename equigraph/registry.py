"""One registry helper for everything a config names: models, datasets, featurisers, losses,
interaction graphs.

A :class:`Registry` maps names to constructors and builds objects from *specs*: a name, or
a mapping ``{name: ..., **kwargs}``. Keyword arguments are checked against the
constructor's signature and simple annotations (``int``, ``float``, ``bool``, ``str`` and
``Optional`` of those) before the constructor runs, so a config typo or a value of the
wrong type is a one-line error naming the registry, the entry and the key. A spec value may
itself be a spec (``{name: frame_averaging, backbone: {name: dgcnn}}``): the constructor
that takes it builds it with the registry it belongs to.

This module imports nothing from equigraph, so every layer of the package can use it.

Example:
    >>> SHAPES = Registry("shape")
    >>> @SHAPES.register("square")
    ... class Square:
    ...     def __init__(self, side: float = 1.0):
    ...         self.side = side
    >>> SHAPES.build({"name": "square", "side": 2}).side
    2
    >>> SHAPES.build({"name": "square", "side": "2"})
    Traceback (most recent call last):
    ...
    ValueError: shape 'square': side must be float, got '2' (str)
"""
from __future__ import annotations

import copy
import inspect
import types
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

__all__ = ["Registry", "spec_of"]

#: Attribute under which :meth:`Registry.build` records the spec an object was built from.
SPEC_ATTR = "_equigraph_spec"


def spec_of(obj: Any) -> Optional[dict]:
    """The spec ``{name: ..., **kwargs}`` that :meth:`Registry.build` built ``obj`` from, or
    :obj:`None` (an object built by hand)."""
    spec = getattr(obj, SPEC_ATTR, None)
    return copy.deepcopy(spec) if spec is not None else None


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _accepts(value: Any, tp) -> Optional[bool]:
    """Whether ``value`` fits the annotation ``tp``; :obj:`None` when the annotation is not a
    simple one this helper checks."""
    if tp is Any or tp is inspect.Parameter.empty:
        return None
    if _is_union(tp):
        results = [_accepts(value, arg) for arg in typing.get_args(tp)]
        if any(r is True for r in results):
            return True
        if any(r is None for r in results):
            return None
        return False
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return None


class Registry:
    """Names to constructors, for one kind of object (``"model"``, ``"dataset"``, ...).

    Args:
        kind (str): what the entries are, used in every error message.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable] = {}

    def register(self, name: str, constructor: Optional[Callable] = None):
        """Register ``constructor`` under ``name`` (case-insensitive); usable as a decorator.

        Raises:
            ValueError: if ``name`` is empty or already registered to another constructor.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        key = name.lower()

        def decorator(fn):
            existing = self._entries.get(key)
            if existing is not None and existing is not fn:
                raise ValueError(f"{self.kind} name {name!r} is already registered to {existing!r}")
            self._entries[key] = fn
            return fn

        return decorator(constructor) if constructor is not None else decorator

    def names(self) -> List[str]:
        """Sorted registered names."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def get(self, name: str) -> Callable:
        """The constructor registered as ``name``; the error lists the known names."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or 'none'}")
        return self._entries[name.lower()]

    def check_kwargs(self, name: str, kwargs: Mapping[str, Any]) -> None:
        """Check ``kwargs`` against the signature and simple annotations of ``name``'s
        constructor: unknown keys and values of the wrong type raise ``ValueError``."""
        fn = self.get(name)
        target = fn.__init__ if inspect.isclass(fn) else fn
        try:
            sig = inspect.signature(target)
            hints = typing.get_type_hints(target)
        except (TypeError, ValueError, NameError):
            return
        params = sig.parameters
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key, value in kwargs.items():
            param = params.get(key)
            if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                if has_var_kw:
                    continue
                allowed = [k for k, p in params.items() if k != "self" and p.kind not in (p.VAR_POSITIONAL,)]
                raise ValueError(f"{self.kind} {name!r}: unknown argument {key!r}; expected one of {allowed}")
            ok = _accepts(value, hints.get(key, inspect.Parameter.empty))
            if ok is False:
                tp = hints[key]
                args = [a for a in typing.get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]
                expected = " or ".join(_type_name(a) for a in args)
                if _is_union(tp) and type(None) in typing.get_args(tp):
                    expected += " or null"
                raise ValueError(f"{self.kind} {name!r}: {key} must be {expected}, got {value!r} "
                                 f"({type(value).__name__})")

    def build(self, spec: Union[str, Mapping[str, Any], Any], **kwargs) -> Any:
        """Build from ``spec``: a name, a mapping ``{name: ..., **kwargs}``, or an object that
        is already built (returned as it is). ``kwargs`` add to / override the spec's.

        The spec is recorded on the object (:func:`spec_of`), so that
        :func:`equigraph.models.save` can rebuild it.
        """
        if isinstance(spec, str):
            spec = {"name": spec}
        elif not isinstance(spec, Mapping):
            if kwargs:
                raise ValueError(f"{self.kind}: cannot apply {sorted(kwargs)} to an object that is already built")
            return spec
        spec = {**copy.deepcopy(dict(spec)), **kwargs}
        if "name" not in spec:
            raise ValueError(f"{self.kind} spec needs a 'name' (one of {', '.join(self.names())}), got {dict(spec)!r}")
        name = spec.pop("name")
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a string, got {name!r}")
        self.check_kwargs(name, spec)
        obj = self.get(name)(**copy.deepcopy(spec))
        try:
            setattr(obj, SPEC_ATTR, {"name": name.lower(), **spec})
        except AttributeError:  # objects with __slots__ or immutable ones keep no spec
            pass
        return obj

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.kind!r}, {self.names()})"
