"""Number formatting shared by the gate's check details and the markdown report."""

from __future__ import annotations


def fmt(value: float) -> str:
    """Format a number compactly: 3 decimals in the usual range, else 4 significant digits."""
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return f"{value:.3f}"
    return f"{value:.4g}"


def fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two numbers so that different numbers never print the same."""
    sa, sb = fmt(a), fmt(b)
    digits = 4
    while sa == sb and a != b and digits <= 17:
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        digits += 1
    return sa, sb
