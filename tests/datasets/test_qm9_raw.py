import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from equigraph.datasets import QM9
from equigraph.datasets import qm9_raw
from equigraph.datasets.qm9_raw import parse_qm9_xyz, read_qm9pack, read_sdf_csv, read_xyz_archive

FILES = Path(__file__).resolve().parents[1] / "data" / "files"
SYMBOL = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}


@pytest.fixture(scope="module")
def pack():
    return read_qm9pack(max_molecules=25)


def _molecule(raw, k):
    a = int(raw.num_atoms[:k].sum())
    b = a + int(raw.num_atoms[k])
    return raw.z[a:b], raw.pos[a:b], raw.charges[a:b], raw.props[k]


def test_qm9pack_reader(pack):
    assert len(pack) == 25 and pack.gdb_id[:3].tolist() == [1, 2, 3]
    z, pos, q, props = _molecule(pack, 0)
    assert z.tolist() == [6, 1, 1, 1, 1]
    np.testing.assert_allclose(pos[2], [1.0117308433, 1.4637511618, 0.0002765748])
    np.testing.assert_allclose(q[0], -0.535689)
    np.testing.assert_allclose(props, [0.0, 13.21, -0.3877, 0.1171, 0.5048, 35.3641, 0.044749,
                                       -40.47893, -40.476062, -40.475117, -40.498597, 6.469])


@pytest.mark.parametrize("gdb_id", [1, 21])
def test_xyz_parser_matches_qm9pack(pack, gdb_id):
    path = FILES / f"dsgdb9nsd_{gdb_id:06d}.xyz"
    mol = parse_qm9_xyz(path.read_text(), str(path))
    k = int(np.flatnonzero(pack.gdb_id == gdb_id)[0])
    z, pos, q, props = _molecule(pack, k)
    assert mol["gdb_id"] == gdb_id and mol["z"].tolist() == z.tolist()
    np.testing.assert_allclose(mol["pos"], pos, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(mol["charges"], q, rtol=1e-6)
    np.testing.assert_allclose(mol["props"], props, rtol=1e-9)


def test_mathematica_exponent():
    text = (FILES / "dsgdb9nsd_000001.xyz").read_text()
    assert "*^" in text
    assert parse_qm9_xyz(text)["pos"][2, 2] == pytest.approx(2.765748e-4)


def _raw_dir(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir(parents=True)
    return raw


def test_xyz_source_matches_qm9pack_and_skips_uncharacterized(tmp_path, pack):
    raw = _raw_dir(tmp_path)
    for name in ("dsgdb9nsd_000001.xyz", "dsgdb9nsd_000021.xyz"):
        shutil.copy(FILES / name, raw / name)
    ds = QM9(root=str(tmp_path), log=False)
    assert ds.source == "xyz" and ds._data.gdb_id.tolist() == [1, 21]
    ref = QM9(root=str(tmp_path / "pack"), max_molecules=25, log=False)
    for i, gid in enumerate([1, 21]):
        j = ref._data.gdb_id.tolist().index(gid)
        assert torch.allclose(ds[i].y, ref[j].y) and torch.allclose(ds[i].pos, ref[j].pos)
    (raw / "uncharacterized.txt").write_text("header\n\n   Index  ...\n      21   C4H10  ...\nfooter\n")
    ds = QM9(root=str(tmp_path), force_reload=True, log=False)
    assert ds._data.gdb_id.tolist() == [1]


def _write_sdf(raw, pack, n):
    blocks, rows = [], ["mol_id,A,B,C,mu,alpha,homo,lumo,gap,r2,zpve,u0,u298,h298,g298,cv"]
    for k in range(n):
        z, pos, _, props = _molecule(pack, k)
        lines = [f"gdb_{pack.gdb_id[k]}", "     RDKit          3D", "",
                 f"{len(z):3d}  0  0  0  0  0  0  0  0  0999 V2000"]
        lines += [f"{x:10.4f}{y:10.4f}{zz:10.4f} {SYMBOL[int(e)]:<3} 0  0  0  0  0  0  0  0  0  0  0  0"
                  for e, (x, y, zz) in zip(z, pos)]
        lines += ["M  END", ""]
        blocks.append("\n".join(lines))
        rows.append(",".join([f"gdb_{pack.gdb_id[k]}", "0", "0", "0"] + [repr(float(v)) for v in props]))
    (raw / "gdb9.sdf").write_text("$$$$\n".join(blocks) + "$$$$\n")
    (raw / "gdb9.sdf.csv").write_text("\n".join(rows) + "\n")


def test_sdf_source_matches_qm9pack(tmp_path, pack):
    raw = _raw_dir(tmp_path)
    _write_sdf(raw, pack, 6)
    ds = QM9(root=str(tmp_path), log=False)
    ref = QM9(root=str(tmp_path / "pack"), max_molecules=6, log=False)
    assert ds.source == "sdf" and len(ds) == 6
    assert torch.allclose(ds._data.y, ref._data.y)
    assert torch.allclose(ds._data.pos, ref._data.pos, atol=1e-4)  # 4 decimals in the SDF
    assert "charges" not in ds[0]


def test_bad_xyz_record_names_file_and_line(tmp_path):
    text = (FILES / "dsgdb9nsd_000001.xyz").read_text().splitlines()
    text[4] = "H\t1.0\tnot-a-number\t0.0\t0.1"
    with pytest.raises(ValueError, match=r"dsgdb9nsd_000007.xyz: line 5: unparsable number"):
        parse_qm9_xyz("\n".join(text), "dsgdb9nsd_000007.xyz")
    with pytest.raises(ValueError, match="line 1: expected the atom count"):
        parse_qm9_xyz("five\n")
    with pytest.raises(ValueError, match="line 2: expected 'gdb ID'"):
        parse_qm9_xyz("1\ngdb 1 2 3\nH 0 0 0 0\n\n\n\n")
    with pytest.raises(ValueError, match="element 'S'"):
        parse_qm9_xyz("\n".join(text[:2] + ["S\t0\t0\t0\t0"] + text[3:]))
    with pytest.raises(ValueError, match="empty"):
        parse_qm9_xyz("")
    raw = _raw_dir(tmp_path)
    (raw / "dsgdb9nsd_000001.xyz").write_text("\n".join(text))
    with pytest.raises(ValueError, match="dsgdb9nsd_000001.xyz: line 5"):
        read_xyz_archive(str(raw))


def test_bad_sdf_record_names_record(tmp_path, pack):
    raw = _raw_dir(tmp_path)
    _write_sdf(raw, pack, 3)
    text = (raw / "gdb9.sdf").read_text().replace("gdb_2\n     RDKit          3D\n\n  4", "gdb_2\n     RDKit          3D\n\n  9")
    (raw / "gdb9.sdf").write_text(text)
    with pytest.raises(ValueError, match=r"record 1 \(molecule gdb_2\) is malformed"):
        read_sdf_csv(str(raw / "gdb9.sdf"), str(raw / "gdb9.sdf.csv"))


def test_bad_qm9pack_row_names_molecule(tmp_path):
    src = qm9_raw.qm9pack_dir()
    with open(os.path.join(src, "qm9_part1.csv")) as f:
        lines = [next(f) for _ in range(6)]
    # Molecule gdb 4 loses one coordinate.
    lines[4] = lines[4].replace("[[0.5995394918,0.,1.],", "[[0.5995394918,0.],", 1)
    (tmp_path / "qm9_part1.csv").write_text("".join(lines))
    with pytest.raises(ValueError, match=r"molecule gdb_4 \(row 3\) has 11 coordinates values"):
        read_qm9pack(folder=str(tmp_path))
    lines[4] = lines[4].replace("[[0.5995394918,0.],", "[[0.5995394918,0.,nan],", 1)
    (tmp_path / "qm9_part1.csv").write_text("".join(lines))
    with pytest.raises(ValueError, match="gdb_4 .* non-finite coordinates"):
        read_qm9pack(folder=str(tmp_path))
