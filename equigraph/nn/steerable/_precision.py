"""Float64 constants for e3nn modules whatever dtype they are built or run in.

e3nn's tensor products compute their Clebsch-Gordan buffers once, in the default dtype
of the moment. A layer built in float32 and then cast with ``.double()`` would keep
float32-rounded coefficients (errors ~1e-8 in float64 results), and so would a float64
layer that loads a float32 state dict (the buffers are part of it). The layers here build
them in float64, keep those as masters, and refill the buffers from the masters whenever
the module is cast, moved or loaded (:class:`ExactConstants`).
"""
from __future__ import annotations

import contextlib
from typing import Dict

import torch
from torch import Tensor


@contextlib.contextmanager
def float64_default():
    """Build inside this block to get float64 buffers; yields the previous default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield previous
    finally:
        torch.set_default_dtype(previous)


def constant_masters(module: torch.nn.Module) -> Dict[str, Tensor]:
    """Float64 CPU copies of the floating-point buffers of ``module`` (by name)."""
    return {name: buf.detach().to(device="cpu", dtype=torch.float64).clone()
            for name, buf in module.named_buffers() if buf.is_floating_point()}


def restore_constants(module: torch.nn.Module, masters: Dict[str, Tensor]) -> None:
    """Refill the buffers of ``module`` from ``masters`` in each buffer's current dtype
    and device (after ``.to()``, ``.double()``, ``.cuda()``)."""
    for name, master in masters.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        buf = owner._buffers.get(leaf)
        if buf is not None and buf.is_floating_point():
            # A copy: the buffer is written in place later (load_state_dict), the master never.
            owner._buffers[leaf] = master.to(device=buf.device, dtype=buf.dtype, copy=True)


class ExactConstants:
    """Mixin for a module whose e3nn submodule ``self.tp`` holds Clebsch-Gordan buffers:
    call :meth:`_keep_constants` after building ``self.tp`` inside :func:`float64_default`."""

    def _keep_constants(self, dtype: torch.dtype) -> None:
        self._constants = constant_masters(self.tp)
        self.tp.to(dtype)
        self.register_load_state_dict_post_hook(_restore_after_load)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        restore_constants(self.tp, self._constants)
        return self


def _restore_after_load(module, incompatible_keys) -> None:
    restore_constants(module.tp, module._constants)
