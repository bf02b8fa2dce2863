import pytest

from equigraph.data.xyz import check_xyz


def _write(tmp_path, text, name="f.xyz"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_files_pass(tmp_path):
    assert check_xyz(_write(tmp_path, "2\nplain\nH 0 0 0\nH 0 0 0.7 extra\n\n1\nnext\nO 1 2 3\n")) is None
    ext = '2\nProperties=species:S:1:pos:R:3:forces:R:3:tag:I:1 energy=-1.0\nH 0 0 0 0 0 1 3\nH 0 0 1 0 0 -1 4\n'
    assert check_xyz(_write(tmp_path, ext, "e.xyz")) is None


@pytest.mark.parametrize("text,message", [
    ("2\nc\nH 0 0 0\nH 0 0 x\n", r"line 4: column 4 \('pos'\) is 'x', expected a number"),
    ("two\nc\nH 0 0 0\n", "line 1: expected the atom count of frame 0"),
    ("3\nc\nH 0 0 0\nH 0 0 1\n", "line 1: frame 0 declares 3 atoms but the file ends after 2"),
    ("1\nc\nH 0 0\n", "line 3: expected at least 4 columns, got 3"),
    ("1\nc\nH 0 0 0\n1\n", "line 4: frame 1 has no comment line"),
    ('1\nProperties=species:S:1:pos:R:3:forces:R:3\nH 0 0 0 1 1\n', "line 3: expected 7 columns, got 6"),
    ('1\nProperties=species:S:1:pos:R:3:n:I:1\nH 0 0 0 1.5\n', r"column 5 \('n'\) is '1.5', expected an integer"),
    ('1\nProperties=species:S:1:pos:R\nH 0 0 0\n', "line 2: malformed Properties"),
])
def test_bad_lines_named(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as err:
        check_xyz(path)
    assert str(path) in str(err.value)


def test_unknown_element_named(tmp_path):
    assert check_xyz(_write(tmp_path, "3\nc\nc 0 0 0\nCL 0 0 2\nX 0 0 4\n")) is None  # ASE's spellings
    with pytest.raises(ValueError, match=r"line 4: unknown element symbol 'Xx' \(column 1\)"):
        check_xyz(_write(tmp_path, "2\nc\nH 0 0 0\nXx 0 0 1\n"))
