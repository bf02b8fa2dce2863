"""Keys & conventions, ASE and RDKit conversion, featurisers.

RDKit is optional (the ``chem`` extra): its functions import it when called.
"""
from equigraph.data import keys
from equigraph.data.ase_io import from_ase, read, to_ase
from equigraph.data.featurizers import (
    BOND_TYPES,
    QM9_ELEMENTS,
    Aromatic,
    AtomFeaturizer,
    AtomFeatures,
    ChargePower,
    ElementOneHot,
    FormalCharge,
    Hybridization,
    bond_features,
)
from equigraph.data.molecules import read_molecules
from equigraph.data.rdkit_io import FRAGMENT_GAP, from_rdkit, from_smiles, from_smiles_list, read_sdf
from equigraph.data.xyz import check_xyz

__all__ = [
    "keys",
    "from_ase", "to_ase", "read", "check_xyz",
    "from_smiles", "from_smiles_list", "from_rdkit", "read_sdf", "read_molecules", "FRAGMENT_GAP",
    "AtomFeaturizer", "ElementOneHot", "ChargePower", "FormalCharge", "Aromatic",
    "Hybridization", "AtomFeatures", "bond_features", "BOND_TYPES", "QM9_ELEMENTS",
]
