"""Irreps validation and SEGNN's hidden-irreps recipes."""
import pytest
from e3nn import o3

from equigraph.nn.steerable import BalancedIrreps, WeightBalancedIrreps, as_irreps, tensor_product_weight_numel


@pytest.mark.parametrize("value", ["4x0e+2x1o", [(4, (0, 1)), (2, (1, -1))], o3.Irreps("4x0e+2x1o")])
def test_as_irreps_accepts_str_list_irreps(value):
    assert as_irreps(value, "irreps_in") == o3.Irreps("4x0e+2x1o")


@pytest.mark.parametrize("value", ["4x0e+2x1q", "banana", 3, None, True, [(1, 2, 3)]])
def test_as_irreps_names_the_bad_argument(value):
    with pytest.raises(ValueError, match="irreps_hidden"):
        as_irreps(value, "irreps_hidden")


@pytest.mark.parametrize("lmax, channels, sh_type, expected", [
    (2, 128, True, "46x0e+14x1o+8x2e"),  # SEGNN's BalancedIrreps(2, 128)
    (1, 64, True, "34x0e+10x1o"),
    (1, 64, False, "22x0e+7x1e+7x1o"),
    (0, 5, True, "5x0e"),
])
def test_balanced_irreps(lmax, channels, sh_type, expected):
    irreps = BalancedIrreps(lmax, channels, sh_type)
    assert irreps == o3.Irreps(expected)
    assert irreps.dim == channels
    # Every order gets a comparable share of the channel budget.
    per_order = [mul * ir.dim for mul, ir in irreps]
    assert max(per_order[1:] or [0]) <= channels / len(per_order)


@pytest.mark.parametrize("args, match", [
    ((2, 10), "too small"),
    ((-1, 10), "lmax"),
    ((1, 0), "channels"),
    ((1.5, 10), "lmax"),
])
def test_balanced_irreps_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        BalancedIrreps(*args)


@pytest.mark.parametrize("scalars, attr, lmax, expected", [
    (64, "1x0e+1x1o", None, "32x0e+32x1o"),  # SEGNN N-body
    ("128x0e", "1x0e+1x1o+1x2e+1x3o", 2, "36x0e+36x1o+36x2e"),  # SEGNN QM9
])
def test_weight_balanced_irreps_matches_segnn(scalars, attr, lmax, expected):
    irreps = WeightBalancedIrreps(scalars, attr, sh=True, lmax=lmax)
    assert irreps == o3.Irreps(expected)
    budget = tensor_product_weight_numel(f"{irreps_scalars(scalars)}x0e", "0e", f"{irreps_scalars(scalars)}x0e")
    assert tensor_product_weight_numel(irreps, attr, irreps) >= budget
    n = irreps[0].mul - 1  # one copy fewer falls short of the budget
    smaller = o3.Irreps([(n, ir) for _, ir in irreps])
    assert tensor_product_weight_numel(smaller, attr, smaller) < budget


def irreps_scalars(scalars):
    return scalars if isinstance(scalars, int) else o3.Irreps(scalars).dim


def test_weight_balanced_irreps_balanced_variant():
    irreps = WeightBalancedIrreps(32, "0e+1o", sh=False)
    assert irreps.lmax == 1 and tensor_product_weight_numel(irreps, "0e+1o", irreps) >= 32 * 32


def test_weight_numel_matches_e3nn():
    for in1, in2, out in [("3x0e+2x1o", "0e+1o+2e", "4x0e+2x1o+1x2e"), ("2x1e+1x0o", "1o", "3x0e+1x1o+2x2o")]:
        assert tensor_product_weight_numel(in1, in2, out) == o3.FullyConnectedTensorProduct(in1, in2, out).weight_numel


@pytest.mark.parametrize("args, match", [
    (("4x1o", "0e+1o"), "scalar"),
    ((0, "0e+1o"), "irreps_in1_scalar"),
    ((8, ""), "irreps_in2 is empty"),
    ((8, "0e+1q"), "irreps_in2"),
])
def test_weight_balanced_irreps_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        WeightBalancedIrreps(*args)
