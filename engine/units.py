"""Units, in one place: the TER unit, the unit tables products are accepted in, conversions.

Each table maps a unit string to ``(scale, offset)`` so that canonical = value * scale + offset.
"""
from __future__ import annotations

TER_UNITS = "g C m-2 month-1"  # the target: monthly terrestrial ecosystem respiration
TER_ANNUAL_UNITS = "g C m-2 yr-1"
TER_TREND_UNITS = "g C m-2 yr-2"
BUDGET_UNITS = "Pg C yr-1"
G_PER_PG = 1e15
KELVIN_AT_0_DEGC = 273.15
DG_PER_G = 10.0  # SoilGrids stores SOC in dg kg-1

DIMENSIONLESS = ("1", "", "-", "dimensionless", "unitless", "fraction")
ONE = {u: (1.0, 0.0) for u in DIMENSIONLESS}
FRACTION = {**ONE, "%": (0.01, 0.0), "percent": (0.01, 0.0)}
KELVIN = {"K": (1.0, 0.0), "kelvin": (1.0, 0.0), **{u: (1.0, KELVIN_AT_0_DEGC) for u in
                                                    ("degC", "deg_C", "celsius", "°C", "C")}}
SOIL_CARBON = {"g kg-1": (1.0, 0.0), "g/kg": (1.0, 0.0), "g kg^-1": (1.0, 0.0),
               "dg kg-1": (1.0 / DG_PER_G, 0.0), "dg/kg": (1.0 / DG_PER_G, 0.0),
               "%": (10.0, 0.0), "percent": (10.0, 0.0)}
AREA_RATIO = {"m2 m-2": (1.0, 0.0), "m2/m2": (1.0, 0.0), "m^2 m^-2": (1.0, 0.0), **ONE}
# TER of other products, to g C m-2 month-1: per-day rates times the days of the month, per-month as is.
TER_PER_DAY = {"g C m-2 d-1": 1.0, "g C m-2 day-1": 1.0, "g m-2 d-1": 1.0, "g m-2 day-1": 1.0,
               "gC m-2 d-1": 1.0, "gC/m2/day": 1.0, "g C m-2 s-1": 86400.0, "kg C m-2 s-1": 86400e3,
               "kg m-2 s-1": 86400e3, "kg C m-2 d-1": 1e3, "kg C m-2 day-1": 1e3, "kgC m-2 d-1": 1e3}
TER_PER_MONTH = {TER_UNITS: 1.0, "g m-2 month-1": 1.0, "gC m-2 month-1": 1.0, "gC/m2/month": 1.0,
                 "kg C m-2 month-1": 1e3, "kgC m-2 month-1": 1e3, "kg m-2 month-1": 1e3}


def celsius_to_kelvin(t):
    """Temperature in K from °C (arrays or scalars)."""
    return t + KELVIN_AT_0_DEGC


def kelvin_to_celsius(t):
    """Temperature in °C from K (arrays or scalars)."""
    return t - KELVIN_AT_0_DEGC
