"""The registered losses of equigraph.train.targets."""
import pytest
import torch

from equigraph.train.targets import LOSSES, UnorientedNormalLoss


def test_unoriented_normal_value_sign_and_scale():
    loss = LOSSES.build("unoriented_normal")
    assert isinstance(loss, UnorientedNormalLoss)
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(50, 3, generator=g, dtype=torch.float64)
    true = torch.nn.functional.normalize(torch.randn(50, 3, generator=g, dtype=torch.float64), dim=-1)
    cos2 = (torch.nn.functional.normalize(pred, dim=-1) * true).sum(-1).square()
    assert torch.allclose(loss(pred, true), (1 - cos2).mean(), atol=1e-10)
    flips = torch.where(torch.rand(50, 1, generator=g) < 0.5, -1.0, 1.0).double()
    assert torch.allclose(loss(flips * 3.5 * pred, true / 7), loss(pred, true), atol=1e-10)
    assert float(loss(-true, true)) == pytest.approx(0.0, abs=1e-10)
    ortho = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    assert float(loss(*ortho)) == pytest.approx(1.0)


def test_unoriented_normal_zero_prediction_has_finite_gradient():
    pred = torch.zeros(4, 3, requires_grad=True)
    value = UnorientedNormalLoss()(pred, torch.eye(3)[[0, 1, 2, 0]])
    value.backward()
    assert float(value) == pytest.approx(1.0)
    assert bool(torch.isfinite(pred.grad).all())


def test_unoriented_normal_errors():
    with pytest.raises(ValueError, match="eps"):
        UnorientedNormalLoss(eps=0.0)
    with pytest.raises(ValueError, match="pred"):
        UnorientedNormalLoss()(torch.ones(4, 3), torch.ones(4, 2))
    with pytest.raises(ValueError, match="pred"):
        UnorientedNormalLoss()(torch.ones(3), torch.ones(3))
