"""A PyG dataset over any structure file ASE reads, or an ASE database."""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from typing import Callable

import torch
from torch_geometric.data import InMemoryDataset

from equigraph.data.ase_io import from_ase, read

__all__ = ["AseDataset"]


class AseDataset(InMemoryDataset):
    r"""Structures of a file (xyz, extxyz, traj, cif, POSCAR, ...) or of an ASE database
    (``.db``, optionally filtered by ``select``) as an :class:`InMemoryDataset` of
    :func:`equigraph.data.from_ase` graphs (``z``, ``pos`` Å, ``cell``, ``pbc``, and
    ``energy`` eV / ``forces`` eV/Å / ``stress`` eV/Å^3 / ``charges`` and other arrays
    when the file has them).

    The processed graphs are cached under ``root`` in a file keyed by the source's path,
    size and modification time and the reading options, so an edited file is reprocessed.

    Args:
        path (str): the structure file or ASE database.
        root (str, optional): cache folder (default: ``$EQUIGRAPH_CACHE/ase``, with
            ``EQUIGRAPH_CACHE`` defaulting to ``~/.cache/equigraph``).
        index (str, optional): frames to read, ASE syntax (default: :obj:`":"`).
        format (str, optional): ASE format; guessed when :obj:`None` (default: :obj:`None`).
        select (str or dict, optional): ASE database query, only for databases
            (default: :obj:`None`, every row).
        dtype (torch.dtype, optional): floating dtype (default: :obj:`torch.float32`).
        transform, pre_transform, pre_filter (callable, optional): PyG's.
        force_reload (bool, optional): reprocess (default: :obj:`False`).

    Example:
        >>> import os, tempfile
        >>> from ase.build import molecule
        >>> from ase.io import write
        >>> d = tempfile.mkdtemp(); p = os.path.join(d, "mols.xyz")
        >>> write(p, [molecule("H2O"), molecule("CH4")])
        >>> ds = AseDataset(p, root=os.path.join(d, "cache"), log=False)
        >>> len(ds), ds[1].z.tolist()
        (2, [6, 1, 1, 1, 1])
    """

    def __init__(self, path: str | os.PathLike, root: str | None = None, index: str = ":",
                 format: str | None = None, select: str | dict | None = None,
                 dtype: torch.dtype = torch.float32, transform: Callable | None = None,
                 pre_transform: Callable | None = None, pre_filter: Callable | None = None,
                 force_reload: bool = False, log: bool = True):
        self.path = osp.abspath(os.fspath(path))
        if not osp.exists(self.path):
            raise FileNotFoundError(f"path: {self.path!r} does not exist")
        if not isinstance(index, str):
            raise ValueError(f"index: expected an ASE index string such as ':' or '-10:', got {index!r}")
        self.index, self.format, self.select, self.dtype = index, format, select, dtype
        self.is_db = (format == "db") or (format is None and self.path.endswith((".db", ".json", ".aselmdb")))
        if select is not None and not self.is_db:
            raise ValueError("select: only applies to an ASE database (.db); "
                             f"{self.path!r} is read as a structure file")
        if root is None:
            cache = os.environ.get("EQUIGRAPH_CACHE") or osp.join(osp.expanduser("~"), ".cache", "equigraph")
            root = osp.join(cache, "ase")
        super().__init__(root, transform, pre_transform, pre_filter, log=log, force_reload=force_reload)
        self.load(self.processed_paths[0])

    def _key(self) -> str:
        stat = os.stat(self.path)
        spec = json.dumps([self.path, stat.st_size, stat.st_mtime_ns, self.index, self.format,
                           self.select, str(self.dtype)], sort_keys=True, default=str)
        return hashlib.sha1(spec.encode()).hexdigest()[:16]

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        stem = osp.splitext(osp.basename(self.path))[0]
        return [f"{stem}-{self._key()}.pt"]

    def download(self) -> None:
        """Nothing to download: the data is the user's file."""

    def _read(self) -> list:
        if self.is_db:
            import ase.db

            with ase.db.connect(self.path) as db:
                rows = list(db.select(**self.select) if isinstance(self.select, dict)
                            else db.select(self.select))
            if self.index != ":":
                rows = rows[_slice(self.index)]
            graphs = []
            for row in rows:
                try:
                    graphs.append(from_ase(row.toatoms(), dtype=self.dtype))
                except ValueError as err:
                    raise ValueError(f"{self.path}: row id={row.id}: {err}") from err
            return graphs
        out = read(self.path, index=self.index, format=self.format, dtype=self.dtype)
        return out if isinstance(out, list) else [out]

    def process(self) -> None:
        data_list = self._read()
        if not data_list:
            raise ValueError(f"{self.path}: no structures (select={self.select!r}, index={self.index!r})")
        if self.pre_filter is not None:
            data_list = [d for d in data_list if self.pre_filter(d)]
            if not data_list:
                raise ValueError("pre_filter: removed every structure")
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        self.save(data_list, self.processed_paths[0])

    def __repr__(self) -> str:
        return f"AseDataset({len(self)}, path={osp.basename(self.path)!r})"


def _slice(index: str) -> slice:
    from ase.io.formats import string2index

    s = string2index(index)
    return s if isinstance(s, slice) else slice(s, s + 1 if s != -1 else None)
