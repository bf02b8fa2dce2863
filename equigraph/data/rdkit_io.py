"""RDKit molecules, SMILES and SDF files to :class:`~torch_geometric.data.Data`.

RDKit is an optional dependency (the ``chem`` extra); it is imported inside the functions.
Positions are in Å.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from equigraph.data import keys

__all__ = ["from_smiles", "from_smiles_list", "from_rdkit", "read_sdf", "embed_conformers"]


def _rdkit():
    try:
        from rdkit import Chem
        from rdkit.Chem import AllChem
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("RDKit is needed here: pip install 'equigraph[chem]'") from err
    return Chem, AllChem


def embed_conformers(mol, num_conformers: int = 1, seed: int = 0, optimize: bool = True,
                     max_iters: int = 2000) -> list[int]:
    """Embed ``num_conformers`` 3D conformers into ``mol`` in place with ETKDG (v3),
    retrying with random starting coordinates if the distance-geometry embedding fails,
    then relax them with MMFF94 (UFF when MMFF lacks parameters; no relaxation when neither
    has them). Single-threaded with ``seed``, so the result is reproducible.

    Returns the conformer ids; raises :class:`ValueError` if fewer than
    ``num_conformers`` conformers could be embedded.
    """
    _, AllChem = _rdkit()
    if not isinstance(num_conformers, int) or num_conformers < 1:
        raise ValueError(f"num_conformers: expected a positive int, got {num_conformers!r}")
    if mol.GetNumAtoms() == 0:
        raise ValueError("mol: has no atoms")
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=num_conformers, params=params))
    if len(ids) < num_conformers:
        # Distance geometry from eigenvector starts fails for some strained or large
        # molecules; random starting coordinates usually succeed.
        mol.RemoveAllConformers()
        params.useRandomCoords = True
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=num_conformers, params=params))
    if len(ids) < num_conformers:
        raise ValueError(
            f"embedded {len(ids)} of {num_conformers} conformers (ETKDG, then random coordinates)"
        )
    if optimize:
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=max_iters)
        elif AllChem.UFFHasAllMoleculeParams(mol):
            AllChem.UFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=max_iters)
    return ids


def _mol_to_data(mol, conf_id: int, featurizer, bonds: bool, dtype) -> Data:
    dtype = dtype or torch.get_default_dtype()
    pos = np.asarray(mol.GetConformer(conf_id).GetPositions(), dtype=np.float64)
    if not np.isfinite(pos).all():
        raise ValueError(f"conformer {conf_id}: coordinates contain NaN or inf")
    data = Data(
        z=torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=torch.long),
        pos=torch.from_numpy(pos).to(dtype),
    )
    if featurizer is not None:
        data[keys.X] = featurizer.features(mol).to(dtype)
    if bonds:
        from equigraph.data.featurizers import bond_features

        edge_index, edge_attr = bond_features(mol)
        data[keys.EDGE_INDEX] = edge_index
        data[keys.EDGE_ATTR] = edge_attr.to(dtype)
    return data


def from_smiles(smiles: str, num_conformers: int = 1, seed: int = 0, *, optimize: bool = True,
                add_hs: bool = True, featurizer=None, bonds: bool = False,
                dtype: torch.dtype | None = None) -> Data | list[Data]:
    r"""3D molecule(s) from a SMILES string.

    Hydrogens are added, conformers embedded with ETKDG (retried from random coordinates on
    failure) and relaxed with MMFF94, or UFF when MMFF has no parameters
    (:func:`embed_conformers`). The same ``seed`` gives the same coordinates.

    Each :class:`Data` has ``z`` ``[N]``, ``pos`` ``[N, 3]`` (Å), ``smiles`` (the input
    string); ``x`` ``[N, F]`` when a ``featurizer`` is given; and with ``bonds=True`` the
    bond graph as ``edge_index`` ``[2, 2B]`` (both directions) and one-hot bond types as
    ``edge_attr`` ``[2B, 4]``, which models then use as their interaction graph.

    Args:
        smiles (str): the SMILES.
        num_conformers (int, optional): number of conformers (default: :obj:`1`).
        seed (int, optional): random seed of the embedding (default: :obj:`0`).
        optimize (bool, optional): force-field relaxation (default: :obj:`True`).
        add_hs (bool, optional): add explicit hydrogens (default: :obj:`True`).
        featurizer (AtomFeaturizer, optional): node features for ``x`` (default: :obj:`None`).
        bonds (bool, optional): write the bond graph (default: :obj:`False`).
        dtype (torch.dtype, optional): float dtype (default: torch's default dtype).

    Returns:
        A :class:`Data` when ``num_conformers == 1``, else a list with one per conformer.

    Raises:
        ValueError: invalid or empty SMILES (quoted), or embedding failure.

    Example:
        >>> d = from_smiles("C", seed=0)
        >>> d.z.tolist(), tuple(d.pos.shape)
        ([6, 1, 1, 1, 1], (5, 3))
    """
    Chem, _ = _rdkit()
    from rdkit import rdBase

    if not isinstance(smiles, str):
        raise TypeError(f"smiles: expected a str, got {type(smiles).__name__}")
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"smiles: RDKit cannot parse {smiles!r}")
    if mol.GetNumAtoms() == 0:
        raise ValueError(f"smiles: {smiles!r} has no atoms")
    if add_hs:
        mol = Chem.AddHs(mol)
    try:
        ids = embed_conformers(mol, num_conformers, seed, optimize)
    except ValueError as err:
        raise ValueError(f"smiles {smiles!r}: {err}") from err
    out = []
    for cid in ids:
        data = _mol_to_data(mol, cid, featurizer, bonds, dtype)
        data.smiles = smiles
        out.append(data)
    return out[0] if num_conformers == 1 else out


def from_smiles_list(smiles: Sequence[str], num_conformers: int = 1, seed: int = 0, **kwargs) -> list:
    """:func:`from_smiles` over a list; an invalid or non-embeddable entry is reported by its
    index (``smiles[i]``) and string. Returns one entry (a :class:`Data`, or a list of them
    when ``num_conformers > 1``) per SMILES.

    Example:
        >>> [d.num_nodes for d in from_smiles_list(["O", "N"])]
        [3, 4]
    """
    if isinstance(smiles, str):
        raise TypeError("smiles: expected a sequence of SMILES strings, got a single str")
    if len(smiles) == 0:
        raise ValueError("smiles: the list is empty")
    out = []
    for i, s in enumerate(smiles):
        try:
            out.append(from_smiles(s, num_conformers, seed, **kwargs))
        except (ValueError, TypeError) as err:
            raise type(err)(f"smiles[{i}]: {err}") from err
    return out


def from_rdkit(mol, conf_id: int = -1, *, featurizer=None, bonds: bool = False, seed: int = 0,
               optimize: bool = True, dtype: torch.dtype | None = None) -> Data:
    """:class:`Data` from an RDKit molecule, with the coordinates of its conformer
    ``conf_id`` when it has conformers; otherwise a copy is embedded with
    :func:`embed_conformers` (atoms as given: hydrogens are not added).

    Args:
        mol (rdkit.Chem.Mol): the molecule.
        conf_id (int, optional): conformer id, ``-1`` for the default (default: :obj:`-1`).
        featurizer, bonds, dtype: as in :func:`from_smiles`.
        seed, optimize: embedding options, used only when ``mol`` has no conformer.

    Example:
        >>> from rdkit import Chem
        >>> mol = Chem.MolFromMolBlock(Chem.MolToMolBlock(Chem.MolFromSmiles("CO")))
        >>> from_rdkit(mol).z.tolist()
        [6, 8]
    """
    Chem, _ = _rdkit()
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"mol: expected an rdkit.Chem.Mol, got {type(mol).__name__}")
    if mol.GetNumAtoms() == 0:
        raise ValueError("mol: has no atoms")
    if mol.GetNumConformers() == 0:
        mol = Chem.Mol(mol)
        embed_conformers(mol, 1, seed, optimize)
        conf_id = -1
    elif conf_id != -1 and conf_id not in [c.GetId() for c in mol.GetConformers()]:
        raise ValueError(f"conf_id: the molecule has no conformer {conf_id}")
    return _mol_to_data(mol, conf_id, featurizer, bonds, dtype)


def read_sdf(path: str | os.PathLike, *, remove_hs: bool = False, sanitize: bool = True,
             skip_invalid: bool = False, featurizer=None, bonds: bool = False,
             dtype: torch.dtype | None = None) -> list[Data]:
    """Read every record of an SDF file with its own coordinates (see :func:`from_rdkit`).
    The record's title becomes ``name``; SD properties become graph-level ``[1]`` float
    tensors when numeric, strings otherwise.

    Args:
        path (str or PathLike): the ``.sdf`` file.
        remove_hs (bool, optional): drop explicit hydrogens (default: :obj:`False`).
        sanitize (bool, optional): RDKit sanitisation (default: :obj:`True`).
        skip_invalid (bool, optional): skip records RDKit cannot parse instead of raising
            (default: :obj:`False`).
        featurizer, bonds, dtype: as in :func:`from_smiles`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a record cannot be parsed (named by its 0-based index), or no records.
    """
    Chem, _ = _rdkit()
    from rdkit import rdBase

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: {path!r} does not exist")
    dtype = dtype or torch.get_default_dtype()
    out = []
    with rdBase.BlockLogs():
        supplier = Chem.SDMolSupplier(path, sanitize=sanitize, removeHs=remove_hs)
        for i in range(len(supplier)):
            mol = supplier[i]
            if mol is None or mol.GetNumConformers() == 0:
                if skip_invalid:
                    continue
                raise ValueError(f"{path}: record {i} (0-based) could not be parsed by RDKit")
            data = _mol_to_data(mol, -1, featurizer, bonds, dtype)
            if mol.HasProp("_Name") and mol.GetProp("_Name"):
                data.name = mol.GetProp("_Name")
            for prop, value in mol.GetPropsAsDict(includePrivate=False).items():
                if prop in data or not prop.isidentifier():
                    continue
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    data[prop] = torch.tensor([float(value)], dtype=dtype)
                else:
                    data[prop] = str(value)
            out.append(data)
    if not out:
        raise ValueError(f"{path}: no valid records")
    return out
