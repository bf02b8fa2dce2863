import math

import pytest
import torch

from equigraph.nn import BesselBasis, GaussianBasis


def test_bessel_values(dtype):
    basis = BesselBasis(num_basis=3, cutoff=4.0)
    r = torch.tensor([0.5, 1.7, 3.9])
    n = torch.arange(1, 4)
    expected = math.sqrt(2 / 4.0) * torch.sin(n * math.pi * r[:, None] / 4.0) / r[:, None]
    out = basis(r)
    assert out.shape == (3, 3) and out.dtype == dtype
    torch.testing.assert_close(out, expected)


def test_bessel_finite_at_zero_with_the_limit_value(dtype):
    basis = BesselBasis(num_basis=4, cutoff=2.0)
    r = torch.zeros(2, requires_grad=True)
    out = basis(r)
    expected = math.sqrt(2 / 2.0) * torch.arange(1, 5) * math.pi / 2.0
    torch.testing.assert_close(out, expected.expand(2, 4))
    out.sum().backward()
    assert torch.isfinite(r.grad).all()


def test_bessel_vanishes_at_cutoff(dtype):
    out = BesselBasis(num_basis=8, cutoff=3.0)(torch.tensor([3.0]))
    assert out.abs().max() < (1e-5 if dtype == torch.float32 else 1e-12)


def test_bessel_keeps_leading_shape(dtype):
    assert BesselBasis(num_basis=5)(torch.rand(2, 7)).shape == (2, 7, 5)


def test_bessel_trainable_and_reset():
    basis = BesselBasis(num_basis=4, cutoff=5.0, trainable=True)
    assert [n for n, _ in basis.named_parameters()] == ["freq"]
    initial = basis.freq.detach().clone()
    basis(torch.rand(6) * 5).sum().backward()
    assert basis.freq.grad is not None and torch.isfinite(basis.freq.grad).all()
    with torch.no_grad():
        basis.freq.add_(1.0)
    basis.reset_parameters()
    torch.testing.assert_close(basis.freq.detach(), initial)
    assert list(BesselBasis(trainable=False).parameters()) == []
    assert "freq" in BesselBasis().state_dict()


def test_gaussian_values(dtype):
    basis = GaussianBasis(start=0.0, stop=2.0, num_basis=5)
    r = torch.tensor([0.3, 1.0])
    offsets = torch.linspace(0.0, 2.0, 5)
    expected = torch.exp(-0.5 * ((r[:, None] - offsets) / 0.5) ** 2)
    out = basis(r)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected)
    # same as PyG's SchNet GaussianSmearing
    from torch_geometric.nn.models.schnet import GaussianSmearing

    torch.testing.assert_close(out, GaussianSmearing(0.0, 2.0, 5)(r))


def test_gaussian_trainable_and_reset():
    basis = GaussianBasis(num_basis=4, trainable=True)
    assert sorted(n for n, _ in basis.named_parameters()) == ["offset", "width"]
    initial = basis.offset.detach().clone()
    with torch.no_grad():
        basis.offset.mul_(2.0)
    basis.reset_parameters()
    torch.testing.assert_close(basis.offset.detach(), initial)


@pytest.mark.parametrize("cls", [BesselBasis, GaussianBasis])
def test_gradcheck(cls):
    basis = cls(num_basis=6).double()
    r = (torch.rand(5, dtype=torch.float64) * 4.5 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(basis, (r,))
    zero = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(basis, (zero,))


def test_repr():
    assert repr(BesselBasis(num_basis=4, cutoff=3.0)) == "BesselBasis(num_basis=4, cutoff=3.0, trainable=False)"
    assert repr(GaussianBasis(0.0, 5.0, 10)) == "GaussianBasis(start=0.0, stop=5.0, num_basis=10, trainable=False)"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: BesselBasis(num_basis=0), "num_basis"),
        (lambda: BesselBasis(num_basis=2.5), "num_basis"),
        (lambda: BesselBasis(cutoff=0.0), "cutoff"),
        (lambda: BesselBasis(cutoff=float("nan")), "cutoff"),
        (lambda: GaussianBasis(start=1.0, stop=1.0), "stop"),
        (lambda: GaussianBasis(start=0.0, stop=float("inf")), "stop"),
        (lambda: GaussianBasis(num_basis=1), "num_basis"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
