"""Keys & conventions, ASE and RDKit conversion, featurisers.

RDKit is optional (the ``chem`` extra): its functions import it when called.
"""
from equigraph.data import keys

__all__ = ["keys"]
