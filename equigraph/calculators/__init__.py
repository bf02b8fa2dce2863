"""ASE calculators for equigraph models: relaxations, molecular dynamics and any other ASE
workflow on a trained (saved) model."""
from equigraph.calculators.calculator import EquigraphCalculator

__all__ = ["EquigraphCalculator"]
