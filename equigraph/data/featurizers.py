r"""Atom and bond featurisers.

Each atom featuriser maps a molecule to an ``[N, F]`` float tensor with
:meth:`AtomFeaturizer.features`, where the molecule is either an RDKit ``Mol`` or a
:class:`~torch_geometric.data.Data` with atomic numbers ``z`` (element-based featurisers
only: formal charge, aromaticity and hybridisation need an RDKit molecule). Used as a PyG
transform (``featurizer(data)``), a featuriser writes ``data.x``; :class:`AtomFeatures`
concatenates several.

An element outside a featuriser's declared list is an error naming the element, never a
row of zeros.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from equigraph.data import keys
from equigraph.registry import Registry

__all__ = [
    "AtomFeaturizer", "ElementOneHot", "ChargePower", "FormalCharge", "Aromatic",
    "Hybridization", "AtomFeatures", "BOND_TYPES", "bond_features", "QM9_ELEMENTS",
]

#: The elements of QM9, in the order used by EGNN / Cormorant one-hot encodings.
QM9_ELEMENTS = ("H", "C", "N", "O", "F")


def _is_mol(obj) -> bool:
    return hasattr(obj, "GetAtoms") and hasattr(obj, "GetNumAtoms")


def _atomic_numbers(obj) -> torch.Tensor:
    if _is_mol(obj):
        return torch.tensor([a.GetAtomicNum() for a in obj.GetAtoms()], dtype=torch.long)
    if isinstance(obj, Data):
        if keys.Z not in obj:
            raise ValueError("data: has no 'z' (atomic numbers) to featurise")
        return obj[keys.Z].view(-1).long()
    raise TypeError(f"expected an RDKit Mol or a torch_geometric Data, got {type(obj).__name__}")


def _element_numbers(elements: Sequence[str | int]) -> tuple[list[int], tuple[str, ...]]:
    from ase.data import atomic_numbers, chemical_symbols

    if isinstance(elements, str) or len(elements) == 0:
        raise ValueError(f"elements: expected a non-empty sequence of symbols or atomic numbers, got {elements!r}")
    numbers = []
    for e in elements:
        if isinstance(e, str):
            if e not in atomic_numbers or e == "X":
                raise ValueError(f"elements: unknown element symbol {e!r}")
            numbers.append(atomic_numbers[e])
        elif isinstance(e, int) and 1 <= e < len(chemical_symbols):
            numbers.append(int(e))
        else:
            raise ValueError(f"elements: {e!r} is neither an element symbol nor an atomic number")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"elements: duplicates in {list(elements)!r}")
    return numbers, tuple(chemical_symbols[z] for z in numbers)


class AtomFeaturizer(BaseTransform):
    """Base class: subclasses set :attr:`num_features` and implement :meth:`features`.
    Calling a featuriser on a :class:`Data` (PyG transform) returns a copy with ``x`` set to
    :meth:`features` (replacing any ``x``)."""

    #: Number of output columns.
    num_features: int
    #: Whether :meth:`features` needs an RDKit molecule (a Data with ``z`` is not enough).
    needs_mol: bool = False
    #: The same input always gives the same features, so a loader may featurise each record
    #: once (``data.loader: device``) instead of on every access.
    deterministic: bool = True

    def features(self, obj) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _mol(self, obj):
        if not _is_mol(obj):
            raise TypeError(
                f"{type(self).__name__} needs an RDKit Mol (it reads chemistry that a Data with "
                f"only 'z' does not carry), got {type(obj).__name__}"
            )
        return obj

    def forward(self, data: Data) -> Data:
        data.x = self.features(data)
        return data


class ElementOneHot(AtomFeaturizer):
    r"""One-hot encoding of the element over a declared element list.

    Args:
        elements (sequence of str or int, optional): element symbols or atomic numbers, in
            column order (default: :obj:`("H", "C", "N", "O", "F")`).

    Example:
        >>> from torch_geometric.data import Data
        >>> import torch
        >>> ElementOneHot().features(Data(z=torch.tensor([6, 1]))).tolist()
        [[0.0, 1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]]
    """

    def __init__(self, elements: Sequence[str | int] = QM9_ELEMENTS):
        self.numbers, self.elements = _element_numbers(elements)
        self.num_features = len(self.numbers)
        lookup = torch.full((max(self.numbers) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(self.numbers)] = torch.arange(len(self.numbers))
        self._lookup = lookup

    def index(self, z: torch.Tensor) -> torch.Tensor:
        """Column of each atomic number; :class:`ValueError` naming the first element not in
        :attr:`elements`."""
        from ase.data import chemical_symbols

        inside = (z >= 0) & (z < self._lookup.numel())
        idx = torch.full_like(z, -1)
        idx[inside] = self._lookup[z[inside]]
        bad = (idx < 0).nonzero().view(-1)
        if bad.numel():
            zb = int(z[bad[0]])
            sym = chemical_symbols[zb] if 0 <= zb < len(chemical_symbols) else "?"
            raise ValueError(
                f"element {sym} (Z={zb}) of atom {int(bad[0])} is not in the featuriser's "
                f"elements {self.elements}"
            )
        return idx

    def features(self, obj) -> torch.Tensor:
        idx = self.index(_atomic_numbers(obj))
        return torch.nn.functional.one_hot(idx, self.num_features).to(torch.get_default_dtype())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(elements={self.elements})"


class ChargePower(AtomFeaturizer):
    r"""EGNN / Cormorant's QM9 node features: the element one-hot times powers of the
    scaled nuclear charge,

    .. math::
        x_{i,(e,k)} = \mathbb{1}[Z_i = Z_e]\,\left(Z_i / Z_{\max}\right)^k,
        \qquad k = 0, \dots, K,

    laid out element-major (``e * (K + 1) + k``), as ``preprocess_input`` in EGNN's
    ``qm9/utils.py``; with the QM9 elements and :math:`K = 2` that is 15 features.

    Args:
        elements (sequence of str or int, optional): elements, in order
            (default: :obj:`("H", "C", "N", "O", "F")`).
        max_power (int, optional): :math:`K` (default: :obj:`2`).
        charge_scale (float, optional): :math:`Z_{\max}`; the largest atomic number in
            ``elements`` when :obj:`None` (default: :obj:`None`, i.e. 9 for QM9).

    Example:
        >>> from torch_geometric.data import Data
        >>> import torch
        >>> x = ChargePower().features(Data(z=torch.tensor([6])))
        >>> x.shape, [round(v, 4) for v in x[0, 3:6].tolist()]
        (torch.Size([1, 15]), [1.0, 0.6667, 0.4444])
    """

    def __init__(self, elements: Sequence[str | int] = QM9_ELEMENTS, max_power: int = 2,
                 charge_scale: float | None = None):
        self.one_hot = ElementOneHot(elements)
        self.elements = self.one_hot.elements
        if not isinstance(max_power, int) or max_power < 0:
            raise ValueError(f"max_power: expected a non-negative int, got {max_power!r}")
        self.max_power = max_power
        self.charge_scale = float(charge_scale if charge_scale is not None else max(self.one_hot.numbers))
        if not self.charge_scale > 0:
            raise ValueError(f"charge_scale: must be positive, got {charge_scale!r}")
        self.num_features = self.one_hot.num_features * (max_power + 1)

    def features(self, obj) -> torch.Tensor:
        z = _atomic_numbers(obj)
        one_hot = self.one_hot.features(obj)
        powers = torch.arange(self.max_power + 1, dtype=one_hot.dtype)
        charge = (z.to(one_hot.dtype).unsqueeze(-1) / self.charge_scale).pow(powers)
        return (one_hot.unsqueeze(-1) * charge.unsqueeze(1)).reshape(len(z), -1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(elements={self.elements}, max_power={self.max_power}, "
                f"charge_scale={self.charge_scale})")


class FormalCharge(AtomFeaturizer):
    """The formal charge of each atom, one column (needs an RDKit molecule).

    Example:
        >>> from rdkit import Chem
        >>> FormalCharge().features(Chem.MolFromSmiles("C[NH3+]")).view(-1).tolist()
        [0.0, 1.0]
    """

    needs_mol = True
    num_features = 1

    def features(self, obj) -> torch.Tensor:
        mol = self._mol(obj)
        return torch.tensor([[a.GetFormalCharge()] for a in mol.GetAtoms()],
                            dtype=torch.get_default_dtype()).view(-1, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Aromatic(AtomFeaturizer):
    """1 for aromatic atoms, 0 otherwise, one column (needs an RDKit molecule).

    Example:
        >>> from rdkit import Chem
        >>> Aromatic().features(Chem.MolFromSmiles("c1ccccc1O")).view(-1).tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    """

    needs_mol = True
    num_features = 1

    def features(self, obj) -> torch.Tensor:
        mol = self._mol(obj)
        return torch.tensor([[float(a.GetIsAromatic())] for a in mol.GetAtoms()],
                            dtype=torch.get_default_dtype()).view(-1, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Hybridization(AtomFeaturizer):
    """One-hot hybridisation over ``types`` plus a last "other" column (RDKit's
    ``UNSPECIFIED``, ``SP2D``, ...); needs an RDKit molecule.

    Args:
        types (sequence of str, optional): RDKit ``HybridizationType`` names
            (default: :obj:`("S", "SP", "SP2", "SP3", "SP3D", "SP3D2")`).

    Example:
        >>> from rdkit import Chem
        >>> Hybridization().features(Chem.MolFromSmiles("C=C")).tolist()[0]
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """

    needs_mol = True

    def __init__(self, types: Sequence[str] = ("S", "SP", "SP2", "SP3", "SP3D", "SP3D2")):
        from rdkit.Chem import HybridizationType

        if isinstance(types, str) or len(types) == 0:
            raise ValueError(f"types: expected a non-empty sequence of names, got {types!r}")
        for t in types:
            if t not in HybridizationType.names:
                raise ValueError(f"types: {t!r} is not an RDKit HybridizationType "
                                 f"({sorted(HybridizationType.names)})")
        self.types = tuple(types)
        self.num_features = len(self.types) + 1

    def features(self, obj) -> torch.Tensor:
        mol = self._mol(obj)
        col = {t: i for i, t in enumerate(self.types)}
        idx = torch.tensor([col.get(str(a.GetHybridization()), len(self.types)) for a in mol.GetAtoms()],
                           dtype=torch.long)
        return torch.nn.functional.one_hot(idx, self.num_features).to(torch.get_default_dtype())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(types={self.types})"


class AtomFeatures(AtomFeaturizer):
    """Concatenation of several featurisers, in order.

    Example:
        >>> from rdkit import Chem
        >>> f = AtomFeatures(ElementOneHot(["C", "N", "O"]), FormalCharge(), Aromatic())
        >>> f.num_features, f.features(Chem.MolFromSmiles("c1ccncc1")).shape
        (5, torch.Size([6, 5]))
    """

    def __init__(self, *featurizers: AtomFeaturizer):
        if not featurizers:
            raise ValueError("featurizers: give at least one featuriser")
        for f in featurizers:
            if not isinstance(f, AtomFeaturizer):
                raise ValueError(f"featurizers: {f!r} is not an AtomFeaturizer")
        self.featurizers = tuple(featurizers)
        self.num_features = sum(f.num_features for f in featurizers)
        self.needs_mol = any(f.needs_mol for f in featurizers)

    def features(self, obj) -> torch.Tensor:
        return torch.cat([f.features(obj) for f in self.featurizers], dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.featurizers))})"


#: Bond types of :func:`bond_features`, in column order (RDKit ``BondType`` names).
BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")


def bond_features(mol) -> tuple[torch.Tensor, torch.Tensor]:
    """Bond graph of an RDKit molecule: ``edge_index`` ``[2, 2B]`` with each bond in both
    directions (consecutive columns) and ``edge_attr`` ``[2B, 4]``, the one-hot bond
    type over :data:`BOND_TYPES`. Another bond type (dative, ...) is a :class:`ValueError`.

    Example:
        >>> from rdkit import Chem
        >>> ei, ea = bond_features(Chem.MolFromSmiles("C=O"))
        >>> ei.tolist(), ea.tolist()
        ([[0, 1], [1, 0]], [[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    """
    if not _is_mol(mol):
        raise TypeError(f"mol: expected an RDKit Mol, got {type(mol).__name__}")
    src, dst, kind = [], [], []
    for bond in mol.GetBonds():
        name = str(bond.GetBondType())
        if name not in BOND_TYPES:
            raise ValueError(f"bond {bond.GetIdx()} has type {name}, not one of {BOND_TYPES}")
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        src += [i, j]
        dst += [j, i]
        kind += [BOND_TYPES.index(name)] * 2
    edge_index = torch.tensor([src, dst], dtype=torch.long).view(2, -1)
    edge_attr = torch.nn.functional.one_hot(torch.tensor(kind, dtype=torch.long), len(BOND_TYPES))
    return edge_index, edge_attr.to(torch.get_default_dtype()).view(-1, len(BOND_TYPES))



#: Featurisers by config name (``data.featurizer: charge_power`` or ``{name: element_onehot, elements: [...]}``).
FEATURIZERS = Registry("featurizer")
FEATURIZERS.register("charge_power", ChargePower)
FEATURIZERS.register("element_onehot", ElementOneHot)
FEATURIZERS.register("formal_charge", FormalCharge)
FEATURIZERS.register("aromatic", Aromatic)
FEATURIZERS.register("hybridization", Hybridization)
