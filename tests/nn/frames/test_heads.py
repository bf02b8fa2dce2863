import pytest
import torch
from torch_geometric.data import Data

from equigraph.models import FrameAveraging
from equigraph.nn.frames import OuterProduct, PrincipalAxis
from equigraph.testing import assert_equivariant


class _RawVector(torch.nn.Module):
    """Not equivariant: a per-point vector from raw coordinates."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, data):
        return {"y": self.lin(data.pos) + data.pos.square()}


def test_sign_free_axis_of_frame_averaged_vectors_is_equivariant_up_to_sign(dtype):
    torch.manual_seed(0)
    scales = torch.tensor([3.0, 2.0, 1.0], dtype=dtype)
    data = Data(pos=torch.randn(12, 3, dtype=dtype, generator=torch.Generator().manual_seed(1)) * scales)
    net = FrameAveraging(OuterProduct(_RawVector().to(dtype)), group="E3").eval()
    axis = PrincipalAxis(net)
    # The axis is known up to sign: its projector y y^T is an equivariant tensor, up to the
    # convergence of the repeated squaring, (lambda_2 / lambda_1)^(2^s).
    def projector(d):
        y = axis(d)["y"]
        return {"p": y.unsqueeze(-1) * y.unsqueeze(-2) / y.square().sum(-1)[:, None, None]}

    eig = torch.linalg.eigvalsh(net(data)["y"])
    bound = float((eig[:, 1] / eig[:, 2]).abs().max()) ** (2 ** axis.squarings)
    assert_equivariant(projector, data, "E3", out_types={"p": "tensor"}, atol=10 * bound + 1e-9, rtol=0)
    # and with one frame element (rank-1 T) the axis is the vector itself, up to sign and length
    v = torch.tensor([[1.0, -2.0, 0.5]], dtype=dtype)
    y = PrincipalAxis(lambda d: {"y": v.unsqueeze(-1) * v.unsqueeze(-2)})(None)["y"]
    cos = (y @ v.T).abs() / (y.norm() * v.norm())
    assert float(cos) == pytest.approx(1.0, abs=1e-6)


def test_heads_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"must be \[N, 3\]"):
        OuterProduct(lambda d: {"y": torch.zeros(2, 4)})(None)
    with pytest.raises(ValueError, match=r"must be \[N, 3, 3\]"):
        PrincipalAxis(lambda d: {"y": torch.zeros(2, 3)})(None)
    with pytest.raises(ValueError, match="squarings"):
        PrincipalAxis(lambda d: d, squarings=0)
