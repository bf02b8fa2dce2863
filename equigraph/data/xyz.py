"""Line-level validation of XYZ / extended-XYZ files.

ASE's reader reports a malformed atom line as a bare ``could not convert string to float``
without the file or the line; :func:`check_xyz` finds the first bad line so that
:func:`equigraph.data.read` can say where the problem is.
"""
from __future__ import annotations

import os
import re

__all__ = ["check_xyz"]

# extxyz property types: S string, R real, I integer, L logical.
_PROPERTIES = re.compile(r"""(?:^|\s)Properties=(?:"([^"]*)"|'([^']*)'|(\S+))""", re.IGNORECASE)
_DEFAULT_COLUMNS = [("species", "S"), ("pos", "R"), ("pos", "R"), ("pos", "R")]


def _columns(comment: str, where: str) -> tuple[list[tuple[str, str]], bool]:
    """Column (name, type) list for the atom lines of a frame and whether it is exact
    (extxyz ``Properties=`` given) or a minimum (plain XYZ: extra columns are ignored)."""
    match = _PROPERTIES.search(comment)
    if match is None:
        return _DEFAULT_COLUMNS, False
    spec = next(g for g in match.groups() if g is not None).split(":")
    if len(spec) % 3 != 0:
        raise ValueError(f"{where}: malformed Properties={':'.join(spec)!r} (expected name:type:count triples)")
    cols = []
    for name, kind, count in zip(spec[0::3], spec[1::3], spec[2::3]):
        if kind.upper() not in "SRIL" or not count.isdigit():
            raise ValueError(f"{where}: malformed Properties entry {name}:{kind}:{count}")
        cols += [(name, kind.upper())] * int(count)
    return cols, True


def _is_element(token: str) -> bool:
    from ase.data import chemical_symbols

    # ASE reads symbols in any case ("c", "CL"); "X" is its dummy atom.
    return token.capitalize() in chemical_symbols


def _check_token(token: str, kind: str) -> bool:
    if kind == "R":
        try:
            float(token)
        except ValueError:
            return False
        return True
    if kind == "I":
        return re.fullmatch(r"[+-]?\d+", token) is not None
    if kind == "L":
        return token.upper() in {"T", "F", "TRUE", "FALSE"}
    return True


def check_xyz(path: str | os.PathLike) -> None:
    """Raise a :class:`ValueError` naming the file and 1-based line number of the first
    malformed line of an XYZ or extended-XYZ file; return ``None`` if every frame parses.

    Checks the atom-count line, the number of columns of each atom line (exact when the
    comment line has an extxyz ``Properties=``, at least 4 otherwise), that the species
    column holds element symbols ASE knows, that numeric columns parse as numbers, and
    that the file does not end inside a frame.

    Example:
        >>> import tempfile, os
        >>> from equigraph.data.xyz import check_xyz
        >>> d = tempfile.mkdtemp(); p = os.path.join(d, "bad.xyz")
        >>> _ = open(p, "w").write("2\\nwater fragment\\nO 0 0 0\\nH 0 0 x\\n")
        >>> try:
        ...     check_xyz(p)
        ... except ValueError as e:
        ...     print(str(e).split(": ", 1)[1])
        line 4: column 4 ('pos') is 'x', expected a number
    """
    path = os.fspath(path)
    with open(path) as f:
        lines = f.read().splitlines()
    i = 0
    frame = 0
    while i < len(lines):
        if not lines[i].strip():
            # Blank lines between or after frames are tolerated by ASE.
            i += 1
            continue
        head = lines[i].split()
        if len(head) != 1 or not head[0].isdigit():
            raise ValueError(
                f"{path}: line {i + 1}: expected the atom count of frame {frame} (one integer), "
                f"got {lines[i]!r}"
            )
        natoms = int(head[0])
        if i + 1 >= len(lines):
            raise ValueError(f"{path}: line {i + 1}: frame {frame} has no comment line (file ends)")
        cols, exact = _columns(lines[i + 1], f"{path}: line {i + 2}")
        for k in range(natoms):
            lineno = i + 2 + k
            if lineno >= len(lines):
                raise ValueError(
                    f"{path}: line {i + 1}: frame {frame} declares {natoms} atoms but the file "
                    f"ends after {k}"
                )
            tokens = lines[lineno].split()
            if (exact and len(tokens) != len(cols)) or (not exact and len(tokens) < len(cols)):
                need = f"{len(cols)}" if exact else f"at least {len(cols)}"
                raise ValueError(
                    f"{path}: line {lineno + 1}: expected {need} columns, got {len(tokens)}: "
                    f"{lines[lineno]!r}"
                )
            for c, (token, (name, kind)) in enumerate(zip(tokens, cols)):
                if name == "species" and not _is_element(token):
                    raise ValueError(
                        f"{path}: line {lineno + 1}: unknown element symbol {token!r} (column {c + 1})"
                    )
                if not _check_token(token, kind):
                    what = {"R": "a number", "I": "an integer", "L": "a logical (T/F)"}[kind]
                    raise ValueError(
                        f"{path}: line {lineno + 1}: column {c + 1} ({name!r}) is {token!r}, "
                        f"expected {what}"
                    )
        i += 2 + natoms
        frame += 1
