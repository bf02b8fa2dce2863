"""The documentation site builds without a warning, its runnable code runs, and its
generated parts (benchmark pages, README results table, docstrings as Markdown) say what
the sources say.

Convention of the guide pages: a ```python block is run here (in order, one namespace per
page, in a temporary working directory and cache); a ```py block is illustrative (it needs
data, a GPU or hours). docs/testing.md's blocks are run by tests/test_testing.py."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Pages whose ```python blocks run; a new guide page with runnable code belongs here.
RUNNABLE_PAGES = [
    "quickstart.md",
    "models/index.md",
    "models/egnn.md",
    "models/segnn.md",
    "models/tfn.md",
    "models/frame_averaging.md",
    "data/ase.md",
    "data/rdkit.md",
    "data/qm9.md",
    "data/nbody.md",
    "data/point_clouds.md",
    "calculator.md",
]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def render():
    return _load("render_benchmarks", ROOT / "scripts" / "render_benchmarks.py")


# --------------------------------------------------------------------------- the build
def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs extra is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    for page in ("index.html", "quickstart/index.html", "models/egnn/index.html", "api/conv/index.html",
                 "benchmarks/index.html"):
        assert (site / page).is_file(), page
    # every benchmark result has its page and its plot in the site
    for md in (ROOT / "benchmarks" / "results").glob("*.md"):
        assert (site / "benchmarks" / md.stem / "index.html").is_file(), md.name
    for png in (ROOT / "benchmarks" / "results").glob("*.png"):
        assert (site / "benchmarks" / png.name).is_file(), png.name
    # the API reference is generated from the docstrings, math and examples included
    conv = (site / "api" / "conv" / "index.html").read_text()
    assert 'id="equigraph.nn.conv.EGNNConv"' in conv and "arithmatex" in conv and "&gt;&gt;&gt;" in conv


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "_ext" not in p.parts}
    missing = sorted(p for p in pages if p not in nav)
    assert not missing, f"pages missing from the nav of mkdocs.yml: {missing}"


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_guide_python_blocks_run(page, tmp_path, monkeypatch, capsys):
    if page in ("quickstart.md", "data/rdkit.md"):
        pytest.importorskip("rdkit")
    text = (DOCS / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"{page} has no runnable block (use ```py for illustrative code)"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EQUIGRAPH_CACHE", str(tmp_path / "cache"))
    namespace = {"__name__": "docs_page"}
    for k, block in enumerate(blocks):
        exec(compile(block, f"docs/{page} (block {k + 1})", "exec"), namespace)


# --------------------------------------------------------------------------- benchmark pages
def _write_result(results: Path, name: str, rows: list[dict], notes: str = "") -> None:
    results.mkdir(parents=True, exist_ok=True)
    doc = {"command": f"python benchmarks/{name}.py", "machine": "test", "date": "2026-01-01T00:00:00",
           "rows": rows}
    (results / f"{name}.json").write_text(json.dumps(doc))
    bench = _load("bench_results", ROOT / "benchmarks" / "_results.py")
    (results / f"{name}.md").write_text(bench.render(doc, name, notes))


def test_result_page_escapes_pipes_in_cells_and_appends_the_plot(render, tmp_path):
    rows = [{"model": "max |a - b| (same weights)", "setting": "s", "metric": "output", "value": 1e-7, "unit": "abs"},
            {"model": "new model", "setting": "s", "metric": "MSE", "value": 0.5, "unit": ""}]
    _write_result(tmp_path, "brand_new", rows, notes="Protocol notes.")
    (tmp_path / "brand_new.png").write_bytes(b"png")
    page = render.render_page("brand_new", tmp_path)
    assert page.startswith("# brand_new\n")  # an untitled benchmark keeps its name
    assert "| max \\|a - b\\| (same weights) | s | output | 1e-07 | abs |" in page
    assert "Protocol notes." in page and page.rstrip().endswith("![brand_new](brand_new.png)")
    assert "brand_new" in render.names(tmp_path)
    index = render.render_index(tmp_path)
    assert "[brand_new](brand_new.md)" in index and "`python benchmarks/brand_new.py`" in index


def test_result_page_with_a_broken_table_names_file_and_line(render, tmp_path):
    (tmp_path / "bad.md").write_text("# bad\n\n| a | b |\n|---|---|\n| 1 | 2 | 3 |\n")
    with pytest.raises(ValueError, match=r"bad\.md line 4: a table row has 3 cells, the header 2"):
        render.render_page("bad", tmp_path)


def test_headline_numbers_come_from_the_results(render, tmp_path):
    rows = [{"model": "EGNN", "setting": "test, best valid", "metric": "MSE", "value": 0.0071234, "unit": "u",
             "published": 0.0071},
            {"model": "EGNN", "setting": "train", "metric": "MSE", "value": 9.0, "unit": "u"}]
    _write_result(tmp_path, "nbody", rows)
    table = render.headline_table(lambda n: f"{n}.md", tmp_path)
    assert "EGNN 0.007123 (u)" in table and "| EGNN 0.0071 |" in table and "9.0" not in table
    assert "qm9" not in table  # results that are missing are left out, never made up


def test_nav_entry_expands_into_every_result(render):
    class Config(dict):
        def __init__(self, nav):
            super().__init__()
            self.nav, self.watch = nav, []

    config = render.on_config(Config([{"Home": "index.md"}, {"Benchmarks": "benchmarks/index.md"}]))
    section = config.nav[1]["Benchmarks"]
    assert section[0] == "benchmarks/index.md"
    assert {list(p.values())[0] for p in section[1:]} == {f"benchmarks/{n}.md" for n in render.names()}


def test_readme_results_table_is_current(render):
    assert render.update_readme(check=True), (
        "README.md's results table differs from benchmarks/results/: run "
        "`python scripts/render_benchmarks.py --readme`")


# --------------------------------------------------------------------------- docstrings
@pytest.fixture(scope="module")
def rst():
    pytest.importorskip("griffe")
    return _load("griffe_rst", DOCS / "_ext" / "griffe_rst.py")


def test_rst_roles_math_and_links(rst):
    text = rst.rst_to_markdown(
        "The :class:`~equigraph.nn.conv.EGNNConv` layer of `the paper <https://arxiv.org/abs/2102.09844>`_, "
        ":math:`\\|\\mathbf{r}_{ij}\\|`, :obj:`None` and :func:`equigraph.nn.edge_vec`.")
    assert '<autoref identifier="equigraph.nn.conv.EGNNConv" optional><code>EGNNConv</code></autoref>' in text
    assert "[the paper](https://arxiv.org/abs/2102.09844)" in text
    assert "$\\|\\mathbf{r}_{ij}\\|$" in text and "``None``" in text
    assert '<code>equigraph.nn.edge_vec()</code>' in text


def test_rst_math_blocks(rst):
    single = rst.rst_to_markdown("Text:\n\n.. math::\n    E = mc^2\n\nAfter.")
    assert "$$\nE = mc^2\n$$" in single and single.endswith("After.")
    aligned = rst.rst_to_markdown(".. math::\n    a &= b\n\n    c &= d\n")
    assert "\\begin{aligned}\na &= b \\\\\nc &= d\n\\end{aligned}" in aligned


def test_rst_simple_table_and_doctest(rst):
    text = rst.rst_to_markdown(
        "====== =====\nkey    shape\n====== =====\n``pos`` ``[N, 3]``\n``z``  ``[N]``\n       long\n====== =====\n\n"
        ">>> [len(v) for v in (1, 2)]\n[16, 2, 2]\n")
    assert "| key | shape |" in text and "| ``pos`` | ``[N, 3]`` |" in text and "| ``z`` | ``[N]`` long |" in text
    assert "```pycon\n>>> [len(v) for v in (1, 2)]\n[16, 2, 2]\n```" in text
