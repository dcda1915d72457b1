"""Money as integer euro cents: shares, VAT, display. Pure functions, no floats.

Every amount is an ``int`` number of euro cents (1 EUR = 100). Intermediate
results that are not whole cents are :class:`~decimal.Decimal` and are rounded
once, half away from zero ("arrondi commercial"), by :func:`round_cents`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

VAT_RATE_PERCENT = Decimal("20")
"""French standard VAT rate (art. 278 CGI), in percent, applied to every invoice.
Each invoice stores the rate it was issued with."""


def round_cents(value: Decimal) -> int:
    """``value`` (cents, possibly fractional) rounded half away from zero to whole cents."""
    if not value.is_finite():
        raise ValueError(f"amount is not finite: {value}")
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def percent_of(amount_cents: int, percent: Decimal | int) -> int:
    """``percent`` % of ``amount_cents``, in whole cents (half up). ``percent`` between 0 and 100."""
    if not isinstance(amount_cents, int) or amount_cents < 0:
        raise ValueError(f"amount_cents must be a non-negative integer, not {amount_cents!r}")
    rate = Decimal(percent)
    if not Decimal(0) <= rate <= Decimal(100):
        raise ValueError(f"percent must be between 0 and 100, not {percent!r}")
    return round_cents(Decimal(amount_cents) * rate / 100)


def vat_cents(total_excl_cents: int, rate_percent: Decimal = VAT_RATE_PERCENT) -> int:
    """VAT on a total excluding tax (cents), rounded half up to the cent, computed once on the total."""
    if not isinstance(total_excl_cents, int) or total_excl_cents < 0:
        raise ValueError(f"total_excl_cents must be a non-negative integer, not {total_excl_cents!r}")
    return round_cents(Decimal(total_excl_cents) * rate_percent / 100)


def parse_euros(text: str) -> int:
    """An amount typed by a person ("1 234,50", "1234.5", "2000") as cents.

    Raises :class:`ValueError` for anything else (more than 2 decimals,
    negative, not a number, above 100 million euros)."""
    cleaned = text.strip().replace("\u00a0", "").replace("\u202f", "").replace(" ", "").replace("€", "")
    cleaned = cleaned.replace(",", ".")
    if not cleaned or cleaned.count(".") > 1 or not cleaned.replace(".", "").isdigit():
        raise ValueError(f"not an amount in euros: {text!r}")
    amount = Decimal(cleaned)
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError(f"at most 2 decimals: {text!r}")
    if amount > Decimal(100_000_000):
        raise ValueError(f"amount too large: {text!r}")
    return int(amount * 100)


def format_cents(cents: int, lang: str) -> str:
    """Display ``cents`` as euros: ``fr``: "1 234,56 €" (non-breaking spaces), ``en``: "€1,234.56"."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    grouped = f"{units:,}"
    if lang == "fr":
        return f"{sign}{grouped.replace(',', chr(0xA0))},{rest:02d}\u00a0€"
    return f"{sign}€{grouped}.{rest:02d}"


def format_percent(value: Decimal, lang: str) -> str:
    """A rate without trailing zeros: ``fr`` "12,15 %", ``en`` "12.15%"."""
    text = format(value.normalize(), "f") if value != 0 else "0"
    if lang == "fr":
        return f"{text.replace('.', ',')}\u00a0%"
    return f"{text}%"
