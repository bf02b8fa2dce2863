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

__all__ = ["from_smiles", "from_smiles_list", "from_rdkit", "read_sdf", "embed_conformers", "FRAGMENT_GAP"]


def _rdkit():
    try:
        from rdkit import Chem
        from rdkit.Chem import AllChem
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("RDKit is needed here: pip install 'equigraph[chem]'") from err
    return Chem, AllChem


FRAGMENT_GAP = 4.0
"""Default smallest distance (Å) between atoms of different fragments of an embedded
molecule (``"A.B"`` SMILES: salts, solvates, complexes); see :func:`embed_conformers`."""

DUPLICATE_RMSD = 0.05
"""RMSD (Å, after alignment; heavy atoms, or all atoms when fewer than two are heavy) under
which :func:`embed_conformers` takes a relaxed conformer for a repeat of an earlier one and
draws another. Hydrogens are left out because a rotated methyl group is the same conformer
with its hydrogens renumbered."""


def _embedding_seeds(seed: int, fragment: int, count: int) -> list[int]:
    """``count`` RDKit seeds, one per conformer of ``fragment``, drawn from ``seed``.

    RDKit seeds conformer ``k`` of one ``EmbedMultipleConfs`` call with
    ``randomSeed * (k + 1)`` (in a 32-bit int), so ``randomSeed=0`` (and seeds that overflow) gives ``count``
    identical conformers, and the streams of seeds ``s`` and ``2 s`` overlap. Every
    conformer is therefore embedded on its own with a seed from a
    :class:`numpy.random.SeedSequence`, which is in ``[1, 2**31 - 1]`` and the same for
    conformer ``k`` whatever ``count`` is.
    """
    import operator

    seed = operator.index(seed)
    state = np.random.SeedSequence(seed % 2**64, spawn_key=(fragment,)).generate_state(count)
    return [int(s) % (2**31 - 1) + 1 for s in state]


def _kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD of two ``[n, 3]`` geometries (same atom order) after optimal superposition."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    rot = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return float(np.sqrt(((a @ rot - b) ** 2).sum(axis=1).mean()))


def _embed_fragment(frag, seeds: list[int], count: int, optimize: bool,
                    max_iters: int) -> list[np.ndarray]:
    """Up to ``count`` relaxed conformers (positions ``[n, 3]``) of one connected fragment.

    Each is embedded from the next seed; a conformer that relaxes to within
    :data:`DUPLICATE_RMSD` of an earlier one is redrawn from the next seed while
    ``len(seeds) - count`` spare seeds last (then kept: rigid molecules have one minimum).
    Stops early, returning fewer, at the first seed that neither ETKDG nor random starting
    coordinates can embed."""
    Chem, AllChem = _rdkit()
    template = Chem.Mol(frag)
    template.RemoveAllConformers()
    relax = None
    if optimize:
        if AllChem.MMFFHasAllMoleculeParams(template):
            relax = AllChem.MMFFOptimizeMoleculeConfs
        elif AllChem.UFFHasAllMoleculeParams(template):
            relax = AllChem.UFFOptimizeMoleculeConfs
    heavy = np.array([a.GetAtomicNum() > 1 for a in template.GetAtoms()])
    compare = heavy if heavy.sum() >= 2 else np.ones_like(heavy)
    kept: list[np.ndarray] = []
    spare = len(seeds) - count
    for seed in seeds:
        if len(kept) == count:
            break
        trial = None
        # Distance geometry from eigenvector starts fails for some strained or large
        # molecules; random starting coordinates usually succeed.
        for random_coords in (False, True):
            trial = Chem.Mol(template)
            params = AllChem.ETKDGv3()
            params.randomSeed = seed
            params.numThreads = 1
            params.useRandomCoords = random_coords
            if list(AllChem.EmbedMultipleConfs(trial, numConfs=1, params=params)):
                break
            trial = None
        if trial is None:
            break
        if relax is not None:
            relax(trial, numThreads=1, maxIters=max_iters)
        pos = np.asarray(trial.GetConformer().GetPositions(), dtype=np.float64)
        if spare and any(_kabsch_rmsd(pos[compare], other[compare]) < DUPLICATE_RMSD for other in kept):
            spare -= 1
            continue
        kept.append(pos)
    return kept


def _lay_out(parts: list[np.ndarray], gap: float) -> list[np.ndarray]:
    """Translate fragments onto the x axis, in order, so that the spheres about their
    centroids that hold all their atoms are ``gap`` apart; the whole is centred on 0."""
    placed, x, previous = [], 0.0, None
    for pos in parts:
        centre = pos.mean(axis=0)
        radius = float(np.linalg.norm(pos - centre, axis=1).max())
        if previous is not None:
            x += previous + gap + radius
        placed.append(pos - centre + np.array([x, 0.0, 0.0]))
        previous = radius
    shift = np.concatenate(placed).mean(axis=0)
    return [p - shift for p in placed]


def embed_conformers(mol, num_conformers: int = 1, seed: int = 0, optimize: bool = True,
                     max_iters: int = 2000, *, fragment_gap: float = FRAGMENT_GAP) -> list[int]:
    """Embed ``num_conformers`` 3D conformers into ``mol`` in place (existing conformers
    are replaced) with ETKDG (v3), retrying from random starting coordinates when the
    distance-geometry embedding fails, then relax them with MMFF94 (UFF when MMFF lacks
    parameters; no relaxation when neither has them).

    Every conformer is embedded and relaxed on its own, single-threaded, from its own seed
    drawn from ``seed``, so the conformers differ from one another (also for the default
    ``seed=0``, where RDKit's multi-conformer seeding repeats one conformer) and the same
    ``seed`` gives the same coordinates. A conformer that relaxes to within
    :data:`DUPLICATE_RMSD` (0.05 Å) of an earlier one is redrawn, at most
    ``num_conformers`` times in all, so rigid molecules, which relax to their one minimum,
    still give (near-)identical conformers.

    A molecule of several fragments (the ``.`` of a SMILES: salts, solvates) is embedded
    and relaxed fragment by fragment (so that no force field pulls ions onto each other),
    and the fragments are then laid out along the x axis, in atom order, each at
    ``fragment_gap`` from the next, measured between the spheres about their centroids
    that hold all their atoms: every atom of one fragment is at least ``fragment_gap``
    from every atom of another. The arrangement is deterministic; the inter-fragment
    geometry is an arbitrary choice, not a relaxed complex.

    Args:
        mol (rdkit.Chem.Mol): the molecule, with the hydrogens it should have.
        num_conformers (int, optional): number of conformers (default: :obj:`1`).
        seed (int, optional): random seed (default: :obj:`0`).
        optimize (bool, optional): force-field relaxation (default: :obj:`True`).
        max_iters (int, optional): relaxation iterations (default: :obj:`2000`).
        fragment_gap (float, optional): smallest distance between atoms of different
            fragments, Å (default: :obj:`FRAGMENT_GAP`, 4 Å).

    Returns:
        The conformer ids.

    Raises:
        ValueError: no atoms, a bad ``num_conformers`` or ``fragment_gap``, or fewer than
            ``num_conformers`` conformers could be embedded.

    Example:
        >>> from rdkit import Chem
        >>> mol = Chem.AddHs(Chem.MolFromSmiles("[Na+].[Cl-]"))
        >>> embed_conformers(mol)
        [0]
        >>> pos = mol.GetConformer().GetPositions()
        >>> round(float(((pos[0] - pos[1]) ** 2).sum() ** 0.5), 3)
        4.0
    """
    Chem, _ = _rdkit()
    if isinstance(num_conformers, bool) or not isinstance(num_conformers, int) or num_conformers < 1:
        raise ValueError(f"num_conformers: expected a positive int, got {num_conformers!r}")
    if not isinstance(fragment_gap, (int, float)) or not np.isfinite(fragment_gap) or fragment_gap < 0:
        raise ValueError(f"fragment_gap: expected a finite distance >= 0 (Å), got {fragment_gap!r}")
    if mol.GetNumAtoms() == 0:
        raise ValueError("mol: has no atoms")
    mapping: list[int] = []
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False, frags=mapping)
    atoms = [np.flatnonzero(np.asarray(mapping) == f) for f in range(len(frags))]
    confs = []
    for f, frag in enumerate(frags):
        if len(frags) > 1:
            # Unsanitised fragments keep the parent's perception; ring info is rebuilt for
            # the embedder and the force fields.
            frag.UpdatePropertyCache(strict=False)
            Chem.FastFindRings(frag)
        # As many spare seeds as conformers, for redrawing repeats.
        seeds = _embedding_seeds(seed, f, 2 * num_conformers)
        positions = _embed_fragment(frag, seeds, num_conformers, optimize, max_iters)
        if len(positions) < num_conformers:
            where = f" (fragment {f} of {len(frags)})" if len(frags) > 1 else ""
            raise ValueError(
                f"embedded {len(positions)} of {num_conformers} conformers{where} "
                "(ETKDG, then random coordinates)"
            )
        confs.append(positions)
    mol.RemoveAllConformers()
    ids = []
    for k in range(num_conformers):
        parts = _lay_out([c[k] for c in confs], float(fragment_gap)) if len(frags) > 1 else [confs[0][k]]
        pos = np.empty((mol.GetNumAtoms(), 3))
        for idx, part in zip(atoms, parts):
            pos[idx] = part
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, p in enumerate(pos.tolist()):
            conf.SetAtomPosition(i, p)
        conf.Set3D(True)
        ids.append(mol.AddConformer(conf, assignId=True))
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
                dtype: torch.dtype | None = None,
                fragment_gap: float = FRAGMENT_GAP) -> Data | list[Data]:
    r"""3D molecule(s) from a SMILES string.

    Hydrogens are added, conformers embedded with ETKDG (retried from random coordinates on
    failure) and relaxed with MMFF94, or UFF when MMFF has no parameters
    (:func:`embed_conformers`). The same ``seed`` gives the same coordinates, and
    conformers differ from one another. The fragments of a SMILES with several
    (``"[Na+].[Cl-]"``, ``"O.O.CCO"``) are embedded one by one and laid out along x with
    every atom of one at least ``fragment_gap`` from every atom of another.

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
        fragment_gap (float, optional): smallest distance between atoms of different
            fragments, Å (default: :obj:`FRAGMENT_GAP`, 4 Å).

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
        ids = embed_conformers(mol, num_conformers, seed, optimize, fragment_gap=fragment_gap)
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


def _why_not_3d(mol, check_hydrogens: bool) -> str | None:
    """Why a record's coordinates cannot be used as a 3D geometry, or ``None``."""
    Chem, _ = _rdkit()
    conf = mol.GetConformer()
    pos = np.asarray(conf.GetPositions(), dtype=np.float64)
    if len(pos) >= 2 and not pos[:, 2].any():
        # Planar molecules (water, benzene) embedded in 3D often lie in the xy plane, so a
        # flat record is kept when its header says 3D and no atom is a pyramidal or
        # tetrahedral centre (sp3 or higher with three or more neighbours).
        hybrid = Chem.HybridizationType
        pyramidal = any(
            a.GetDegree() >= 3 and a.GetHybridization() in (hybrid.SP3, hybrid.SP3D, hybrid.SP3D2)
            for a in mol.GetAtoms()
        )
        if not conf.Is3D() or pyramidal:
            return "is a 2D depiction (all z coordinates are 0), not a 3D geometry"
    if check_hydrogens:
        mol.UpdatePropertyCache(strict=False)
        missing = sum(a.GetTotalNumHs() for a in mol.GetAtoms())
        if missing:
            return (f"no explicit hydrogens where the molecule needs them ({missing} implicit), so "
                    "the coordinates are not those of the whole molecule")
    return None


def read_sdf(path: str | os.PathLike, *, remove_hs: bool = False, sanitize: bool = True,
             skip_invalid: bool = False, embed: bool = False, seed: int = 0, optimize: bool = True,
             featurizer=None, bonds: bool = False, dtype: torch.dtype | None = None) -> list[Data]:
    """Read every record of an SDF (or MOL) file with its own 3D coordinates (see
    :func:`from_rdkit`).

    Each :class:`Data` has ``name``: the record's title, or ``"{path}[i]"`` (0-based) when
    it has none. SD properties become graph-level ``[1]`` float tensors when numeric in
    every record, strings otherwise; a property that some records lack is left out of all
    of them, with a warning, so that the list batches
    (:class:`~torch_geometric.data.Batch`).

    Records whose coordinates are not a 3D geometry of the whole molecule are refused
    with a :class:`ValueError`: a 2D depiction (all z coordinates 0, unless the header
    says 3D and the molecule can be planar: no sp3 atom with three or more neighbours, as
    water or benzene lying in the xy plane), or a record without the explicit hydrogens
    its atoms need (implicit hydrogen count > 0; not checked with ``remove_hs=True``).
    With ``embed=True`` such records are instead given their hydrogens and new 3D
    coordinates, as :func:`from_smiles` does (ETKDG and MMFF94, ``seed``, fragments laid
    out apart); their coordinates in the file are discarded, and records that are
    already 3D with hydrogens keep theirs.

    Args:
        path (str or PathLike): the ``.sdf`` (or ``.mol``) file.
        remove_hs (bool, optional): drop explicit hydrogens (default: :obj:`False`).
        sanitize (bool, optional): RDKit sanitisation (default: :obj:`True`).
        skip_invalid (bool, optional): skip records RDKit cannot parse instead of raising
            (default: :obj:`False`).
        embed (bool, optional): embed 2D and hydrogen-less records in 3D instead of
            refusing them (default: :obj:`False`).
        seed (int, optional): embedding seed, with ``embed=True`` (default: :obj:`0`).
        optimize (bool, optional): force-field relaxation of embedded records
            (default: :obj:`True`).
        featurizer, bonds, dtype: as in :func:`from_smiles`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty or not an SDF; a record cannot be parsed, is 2D or
            lacks hydrogens (named by its 0-based index and title); or no records.
    """
    Chem, _ = _rdkit()
    from rdkit import rdBase

    from equigraph.data.molecules import drop_uneven_attributes

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty (no records)")
    dtype = dtype or torch.get_default_dtype()
    out, props = [], []
    with rdBase.BlockLogs():
        try:
            # Hydrogens are removed after the checks, which need to see them.
            supplier = Chem.SDMolSupplier(path, sanitize=sanitize, removeHs=False)
            count = len(supplier)
        except OSError as err:
            raise ValueError(f"{path}: RDKit cannot read it as an SDF file ({err})") from err
        for i in range(count):
            mol = supplier[i]
            if mol is None or mol.GetNumConformers() == 0:
                if skip_invalid:
                    continue
                raise ValueError(f"{path}: record {i} (0-based) could not be parsed by RDKit")
            title = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
            where = f"{path}: record {i}" + (f" ({title!r})" if title else "")
            record_props = mol.GetPropsAsDict(includePrivate=False, includeComputed=False)
            problem = _why_not_3d(mol, check_hydrogens=not remove_hs)
            if problem is not None:
                if not embed:
                    raise ValueError(
                        f"{where}: {problem}; pass embed=True to add hydrogens and embed it in 3D "
                        "with RDKit, or give a 3D structure with explicit hydrogens"
                    )
                mol = Chem.AddHs(mol)
                try:
                    embed_conformers(mol, 1, seed, optimize)
                except ValueError as err:
                    raise ValueError(f"{where}: {err}") from err
            if remove_hs:
                mol = Chem.RemoveHs(mol, sanitize=sanitize)
            try:
                data = _mol_to_data(mol, -1, featurizer, bonds, dtype)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from err
            data.name = title or f"{path}[{i}]"
            out.append(data)
            props.append(record_props)
    if not out:
        raise ValueError(f"{path}: no valid records")
    # A property that is text in any record is text in all, so that every record holds
    # the same kind of value.
    numeric = {}
    for record in props:
        for prop, value in record.items():
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            numeric[prop] = numeric.get(prop, True) and is_number
    for data, record in zip(out, props):
        for prop, value in record.items():
            if prop in data or not prop.isidentifier():
                continue
            data[prop] = torch.tensor([float(value)], dtype=dtype) if numeric[prop] else str(value)
    drop_uneven_attributes(out, path, what="properties")
    return out
