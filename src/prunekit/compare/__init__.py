"""``prunekit compare``: prune one dense model several ways and measure the trade-off."""

from .runner import run_comparison, run_variant
from .settings import CompareSettings
from .variants import ALL_VARIANTS, DEFAULT_VARIANTS, Variant, parse_variant, parse_variants

__all__ = [
    "run_comparison",
    "run_variant",
    "CompareSettings",
    "Variant",
    "parse_variant",
    "parse_variants",
    "ALL_VARIANTS",
    "DEFAULT_VARIANTS",
]
