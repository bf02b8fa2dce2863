import pytest
import torch

from equigraph.nn.frames import check_value_shape, frame_transform
from equigraph.symmetry import parse_type, random_o3, transform

TYPES = ["scalar", "pseudoscalar", "vector", "pseudovector", "point", "cell", "tensor", "2x0e+0o+1o+1e+2e+2o+3o+3e"]


def _value(type_, rows, frames, gen):
    type_ = parse_type(type_)
    tail = {"vector": (2, 3), "pseudovector": (3,), "point": (3,), "cell": (3, 3), "tensor": (2, 3, 3), "scalar": (4,),
            "pseudoscalar": (1,)}.get(type_, (getattr(type_, "dim", 0),))
    return torch.randn(rows, frames, *tail, generator=gen, dtype=torch.float64).to(torch.get_default_dtype())


@pytest.mark.parametrize("type_", TYPES)
def test_matches_the_reference_transform_row_by_row(type_, dtype):
    gen = torch.Generator().manual_seed(0)
    R = random_o3(3, 2, generator=1).to(dtype)  # proper and improper elements
    t = torch.randn(3, 3, generator=gen, dtype=torch.float64).to(dtype)
    x = _value(type_, 3, 2, gen)
    out = frame_transform(x, type_, R, t)
    assert out.dtype == dtype and out.shape == x.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-11
    for m in range(3):
        for f in range(2):
            expected = transform(x[m, f], type_, R[m, f], t[m])
            assert torch.allclose(out[m, f].double(), expected, atol=tol), (m, f)


@pytest.mark.parametrize("type_", TYPES)
def test_inverse_undoes_the_element(type_, dtype):
    gen = torch.Generator().manual_seed(1)
    R = random_o3(4, 3, generator=2).to(dtype)
    t = torch.randn(4, 3, dtype=dtype, generator=None)
    x = _value(type_, 4, 3, gen)
    back = frame_transform(frame_transform(x, type_, R, t, inverse=True), type_, R, t)
    assert torch.allclose(back, x, atol=1e-5 if dtype == torch.float32 else 1e-12)


def test_differentiable(dtype):
    R = random_o3(2, 1, generator=3).to(dtype).requires_grad_(True)
    x = torch.randn(2, 1, 9, requires_grad=True)
    frame_transform(x, "1o+2e+0o", R, inverse=True).pow(3).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(R.grad).all() and R.grad.abs().sum() > 0


def test_shape_errors():
    R = torch.eye(3).expand(2, 1, 3, 3)
    with pytest.raises(ValueError, match=r"'v' is declared 'vector' but has shape \[2, 1, 4\]"):
        frame_transform(torch.zeros(2, 1, 4), "vector", R, name="v")
    with pytest.raises(ValueError, match=r"does not match frames of shape \[2, 1, 3, 3\]"):
        frame_transform(torch.zeros(3, 1, 3), "vector", R)
    with pytest.raises(ValueError, match=r"declared irreps 1x1o\+1x0e \(dim 4\)"):
        frame_transform(torch.zeros(2, 1, 3), "1o+0e", R)
    with pytest.raises(ValueError, match=r"a cell must be \[\*, 3, 3\]"):
        check_value_shape(torch.zeros(2, 2, 3), "cell", "cell")
    with pytest.raises(ValueError, match=r"a tensor must be \[\*, 3, 3\]"):
        frame_transform(torch.zeros(2, 1, 3), "tensor", R)
    with pytest.raises(ValueError, match="neither one of"):
        frame_transform(torch.zeros(2, 1, 3), "spinor", R)
