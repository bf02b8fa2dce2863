"""Predictions for new structures with a saved model: the same inputs as in training
(featuriser), the elements it was trained on, physical units, errors naming the structure.

Used by ``equigraph predict`` and the ASE calculator; it never imports the trainer.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from equigraph.data import keys as K

__all__ = ["prepare", "predict", "featurizer_of"]

_SYMBOLS = None


def _symbol(z: int) -> str:
    global _SYMBOLS
    if _SYMBOLS is None:
        from ase.data import chemical_symbols

        _SYMBOLS = chemical_symbols
    return _SYMBOLS[z] if 0 <= z < len(_SYMBOLS) else f"Z={z}"


def featurizer_of(model):
    """The featuriser of the model's training data (from its saved metadata), or ``None``."""
    spec = (getattr(model, "metadata", None) or {}).get("featurizer")
    if spec is None:
        return None
    from equigraph.data.featurizers import FEATURIZERS

    return FEATURIZERS.build(spec)


def _name(mol, i: int) -> str:
    name = getattr(mol, "name", None)
    return f"molecule {i} ({name})" if name else f"molecule {i}"


def prepare(model, molecules: Sequence[Data]) -> List[Data]:
    """Copies of ``molecules`` ready for ``model``: checked (``z``, ``pos``, finite), restricted
    to the elements the model was trained on (``metadata["elements"]``), featurised like its
    training data, in the model's dtype."""
    meta = getattr(model, "metadata", None) or {}
    elements = meta.get("elements")
    featurizer = featurizer_of(model)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())
    out = []
    for i, mol in enumerate(molecules):
        for key in (K.Z, K.POS):
            if getattr(mol, key, None) is None:
                raise ValueError(f"{_name(mol, i)}: missing '{key}'")
        if not bool(torch.isfinite(mol[K.POS]).all()):
            raise ValueError(f"{_name(mol, i)}: positions contain NaN or inf")
        if elements is not None:
            unseen = sorted(set(mol[K.Z].tolist()) - set(elements))
            if unseen:
                seen = " ".join(_symbol(z) for z in elements)
                bad = ", ".join(f"{_symbol(z)} (Z={z})" for z in unseen)
                raise ValueError(f"{_name(mol, i)}: element {bad} was not in this model's training data "
                                 f"(it was trained on {seen}); its prediction would be meaningless")
        mol = mol.clone()
        for key, value in mol.items():
            if isinstance(value, Tensor) and value.is_floating_point():
                mol[key] = value.to(dtype)
        out.append(featurizer(mol) if featurizer is not None else mol)
    return out


def predict(model, molecules: Sequence[Data], batch_size: int = 64,
            outputs: Optional[Sequence[str]] = None) -> Dict[str, Tensor]:
    """``{output: tensor}`` for ``molecules`` (graph-level outputs one row per molecule,
    node-level ones concatenated). An error inside the model (e.g. coincident atoms) is
    re-raised naming the molecule that caused it."""
    data = prepare(model, molecules)
    if not data:
        raise ValueError("no molecules to predict")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval()
    results: Dict[str, List[Tensor]] = {}
    for start in range(0, len(data), batch_size):
        chunk = data[start:start + batch_size]
        try:
            out = model(Batch.from_data_list(chunk).to(device))
        except ValueError:
            for j, mol in enumerate(chunk):
                try:
                    model(Batch.from_data_list([mol]).to(device))
                except ValueError as err:
                    raise ValueError(f"{_name(molecules[start + j], start + j)}: {err}") from None
            raise
        for key, value in out.items():
            if outputs is None or key in outputs:
                results.setdefault(key, []).append(value.detach().cpu())
    return {k: torch.cat(v) for k, v in results.items()}
