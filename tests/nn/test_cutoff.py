import math

import pytest
import torch

from equigraph.nn import CosineCutoff, PolynomialCutoff

CUTOFFS = [CosineCutoff(3.0), PolynomialCutoff(3.0, p=6), PolynomialCutoff(3.0, p=3)]
IDS = ["cosine", "poly6", "poly3"]


def test_cosine_values(dtype):
    r = torch.tensor([0.0, 0.75, 1.5, 2.9, 3.0, 4.0])
    expected = torch.where(r < 3.0, 0.5 * (torch.cos(math.pi * r / 3.0) + 1), torch.zeros_like(r))
    torch.testing.assert_close(CosineCutoff(3.0)(r), expected)


def test_polynomial_values(dtype):
    p, c = 6.0, 3.0
    r = torch.tensor([0.0, 0.75, 1.5, 2.9, 3.0, 4.0])
    d = r / c
    poly = 1 - (p + 1) * (p + 2) / 2 * d**p + p * (p + 2) * d ** (p + 1) - p * (p + 1) / 2 * d ** (p + 2)
    torch.testing.assert_close(PolynomialCutoff(c, p=6)(r), torch.where(r < c, poly, torch.zeros_like(r)))


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=IDS)
def test_one_at_zero_zero_beyond(dtype, cutoff):
    out = cutoff(torch.tensor([0.0, 3.0, 3.5, 100.0]))
    assert out.dtype == dtype
    torch.testing.assert_close(out, torch.tensor([1.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=IDS)
def test_monotone_between(dtype, cutoff):
    out = cutoff(torch.linspace(0.0, 3.0, 200))
    assert (out.diff() <= 1e-6).all() and (out >= 0).all() and (out <= 1).all()


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=IDS)
def test_smooth_at_the_cutoff(cutoff):
    # value and first derivative go to 0 from the inside (float64 for a clean limit)
    r = torch.tensor([3.0 - 1e-3, 3.0 - 1e-5, 3.0, 3.0 + 1e-5], dtype=torch.float64, requires_grad=True)
    value = cutoff(r)
    (grad,) = torch.autograd.grad(value.sum(), r)
    assert value[0] < 1e-4 and value[1] < 1e-8 and value[2:].abs().max() == 0
    assert grad[0].abs() < 1e-2 and grad[1].abs() < 1e-4 and grad[2:].abs().max() == 0


def test_polynomial_second_derivative_vanishes_at_cutoff():
    cutoff = PolynomialCutoff(2.0, p=6)
    delta = torch.tensor([1e-3, 1e-6], dtype=torch.float64)
    r = (2.0 - delta).requires_grad_()
    (g,) = torch.autograd.grad(cutoff(r).sum(), r, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), r)
    # f'' goes to 0 linearly in the distance to the cutoff (f''' is what jumps)
    assert (h.abs() < 100 * delta).all() and h[1].abs() < 1e-4


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=IDS)
def test_gradcheck(cutoff):
    r = torch.tensor([0.0, 0.4, 1.3, 2.2, 2.95, 3.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cutoff, (r,))


def test_repr_and_reset():
    assert repr(CosineCutoff(5.0)) == "CosineCutoff(cutoff=5.0)"
    assert repr(PolynomialCutoff(5.0)) == "PolynomialCutoff(cutoff=5.0, p=6)"
    PolynomialCutoff(5.0).reset_parameters()
    assert list(CosineCutoff(1.0).parameters()) == []


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CosineCutoff(0.0), "cutoff"),
        (lambda: CosineCutoff(-1.0), "cutoff"),
        (lambda: PolynomialCutoff(float("inf")), "cutoff"),
        (lambda: PolynomialCutoff(1.0, p=0.5), "`p`"),
        (lambda: PolynomialCutoff(1.0, p=float("nan")), "`p`"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
