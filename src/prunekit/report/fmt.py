"""Number formatting shared by the terminal table and report.md."""

from __future__ import annotations


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}"


def signed_pt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def times(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}x"


def millis(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def count(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def mega(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.2f}M"


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.2f}"
