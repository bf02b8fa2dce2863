"""Gate: the e3nn gated nonlinearity built for the irreps it outputs."""
import pytest
import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch_geometric.data import Data

from equigraph.nn.steerable import Gate, gate_irreps
from equigraph.testing import assert_equivariant


def test_gate_irreps_split():
    assert gate_irreps("16x0e+2x0o+8x1o+4x2e") == (o3.Irreps("16x0e+2x0o"), o3.Irreps("12x0e"), o3.Irreps("8x1o+4x2e"))
    assert gate_irreps("4x0e") == (o3.Irreps("4x0e"), o3.Irreps(""), o3.Irreps(""))


def test_matches_e3nn_gate():
    gate = Gate("6x0e+3x1o+2x2e")
    ref = e3nn_nn.Gate("6x0e", [torch.nn.functional.silu], "5x0e", [torch.sigmoid], "3x1o+2x2e")
    x = torch.randn(4, gate.irreps_in.dim)
    assert gate.irreps_in == o3.Irreps("11x0e+3x1o+2x2e")
    torch.testing.assert_close(gate(x), ref(x))
    assert list(gate.parameters()) == []


@pytest.mark.parametrize("irreps", ["6x0e+3x1o+2x2e", "4x0e+2x0o+2x1e", "3x1o", "5x0e"])
def test_equivariant(irreps):
    gate = Gate(irreps)
    gen = torch.Generator().manual_seed(0)
    data = Data(x=torch.randn(5, gate.irreps_in.dim, generator=gen).to(torch.get_default_dtype()), num_nodes=5)
    assert_equivariant(lambda d: gate(d.x), data, "O3", in_types={"x": gate.irreps_in}, out_types=gate.irreps_out)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scalars first"):
        Gate("3x1o+4x0e")
    with pytest.raises(ValueError, match="irreps_out"):
        Gate("3x1x")
    with pytest.raises(ValueError, match="empty"):
        Gate("")
    with pytest.raises(ValueError, match="parity"):
        Gate("2x0o", odd_act=torch.nn.functional.silu)  # neither odd nor even
    gate = Gate("2x0e+1x1o")
    with pytest.raises(ValueError, match="last dimension 6"):
        gate(torch.zeros(3, 5))
    assert repr(gate) == "Gate(3x0e+1x1o -> 2x0e+1x1o)"
