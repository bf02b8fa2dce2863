"""Suite-wide fixtures.

Geometric tests (everything under ``tests/nn`` and ``tests/models``, and any test marked
``@pytest.mark.geometric``) run twice, in float32 and float64, with
``torch.set_default_dtype`` set for the duration of the test (as e3nn does); the dtype is
the ``dtype`` fixture. Other tests run once in the default dtype, which ``dtype`` returns.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
GEOMETRIC_DIRS = {"nn", "models"}
DTYPES = [torch.float32, torch.float64]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "geometric: run the test in float32 and float64 (the `dtype` fixture sets the default dtype)"
    )


def _is_geometric(metafunc) -> bool:
    if metafunc.definition.get_closest_marker("geometric") is not None:
        return True
    try:
        parts = Path(str(metafunc.definition.path)).resolve().relative_to(TESTS).parts
    except ValueError:
        return False
    return len(parts) > 1 and parts[0] in GEOMETRIC_DIRS


def _parametrizes_dtype(metafunc) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "dtype" in names:
            return True
    return False


def pytest_generate_tests(metafunc):
    if "dtype" in metafunc.fixturenames and _is_geometric(metafunc) and not _parametrizes_dtype(metafunc):
        metafunc.parametrize("dtype", DTYPES, indirect=True, ids=["float32", "float64"])


@pytest.fixture(autouse=True)
def dtype(request):
    """The default dtype for this test: float32 or float64 for geometric tests."""
    wanted = getattr(request, "param", None)
    previous = torch.get_default_dtype()
    if wanted is not None:
        torch.set_default_dtype(wanted)
    try:
        yield torch.get_default_dtype()
    finally:
        torch.set_default_dtype(previous)
