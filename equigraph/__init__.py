"""equigraph: symmetry-aware graph neural networks on point clouds and molecules."""
__version__ = "0.1.0"
