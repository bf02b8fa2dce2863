"""Unit conversion factors for reporting metrics in a chosen unit (eV -> meV, ...)."""
from __future__ import annotations

# Multiplicative factors to a reference unit per dimension; CODATA 2018 for Hartree.
_ENERGY_IN_EV = {
    "eV": 1.0,
    "meV": 1e-3,
    "Ha": 27.211386245988,
    "Hartree": 27.211386245988,
    "mHa": 27.211386245988e-3,
    "kcal/mol": 0.0433641043,
    "kJ/mol": 0.0103642697,
}


def conversion_factor(unit: str | None, to: str | None) -> float:
    """Factor ``f`` with ``value_in_to = f * value_in_unit``.

    ``to=None`` or ``to == unit`` means no conversion. Only energy units are converted; a
    pair of different units outside that table is an error.

    >>> conversion_factor("eV", "meV")
    1000.0
    >>> conversion_factor("eV/Å", "meV")
    1000.0
    >>> conversion_factor("D", None)
    1.0
    """
    if to is None or to == unit:
        return 1.0
    if unit in _ENERGY_IN_EV and to in _ENERGY_IN_EV:
        return _ENERGY_IN_EV[unit] / _ENERGY_IN_EV[to]
    # Energy per something (eV/Å -> meV/Å); a bare energy unit for such a target means the
    # same denominator (forces in eV/Å reported with metric_unit meV are meV/Å).
    num, sep, den = (unit or "").partition("/")
    if sep and num in _ENERGY_IN_EV:
        to_num, to_sep, to_den = to.partition("/")
        if to_num in _ENERGY_IN_EV and (not to_sep or to_den == den):
            return _ENERGY_IN_EV[num] / _ENERGY_IN_EV[to_num]
    raise ValueError(
        f"metric_unit: cannot convert {unit!r} to {to!r}; known energy units: {sorted(_ENERGY_IN_EV)}"
    )
