"""Point clouds with a well-separated PCA spectrum, so that frames are far from degenerate."""
import pytest
import torch

from equigraph.symmetry import random_rotation


def anisotropic_cloud(n: int, seed: int, variances=(9.0, 4.0, 1.0), dtype=None) -> torch.Tensor:
    """``n`` random points whose covariance has eigenvalues exactly proportional to
    ``variances``, randomly rotated and shifted, in ``dtype`` (default dtype)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    x = x - x.mean(dim=0)
    lam, V = torch.linalg.eigh(x.T @ x)
    x = (x @ V) / lam.sqrt() * torch.tensor(variances, dtype=torch.float64).sqrt()
    x = x @ random_rotation(generator=seed).T + torch.randn(3, generator=g, dtype=torch.float64)
    return x.to(dtype or torch.get_default_dtype())


@pytest.fixture
def cloud():
    return anisotropic_cloud
