"""Format and check-digit checks for tracking numbers, before they go to Groupon.

Groupon cannot edit a tracking number once uploaded, so a typo is nearly permanent. This module
checks a number against the formats of the carrier its Groupon code stands for, using the
``tracking-numbers`` package (generated from jkeen's ``tracking_number_data``).

A format check proves only that a number is well formed, not that the parcel exists.

Rules per Groupon code (``_RULES``):

* *exhaustive* carriers (UPS, USPS, FedEx): a number that matches none of their formats is
  invalid.
* other known carriers (DHL Express, OnTrac, postal S10 users such as Royal Mail): a number that
  matches their format must pass its check digit; a number that matches none of their formats is
  accepted unless it is clearly another carrier's (``1Z...``, S10, OnTrac, Amazon), because these
  carriers also issue numbers in formats the package does not know.
* codes with no rule: not checked (``known_format`` False), only basic hygiene.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import tracking_numbers

__all__ = [
    "MAX_TRACKING_LENGTH",
    "TrackingCheck",
    "check_tracking_number",
    "normalize_tracking_number",
]

#: Longest number accepted (USPS IMpb with routing code is 34 characters).
MAX_TRACKING_LENGTH = 40


@dataclass(frozen=True, slots=True)
class TrackingCheck:
    """Result of :func:`check_tracking_number`.

    :ivar known_format: a format is known for this carrier code.
    :ivar valid: the number may be sent (always True for unknown carriers with sane text).
    :ivar reason: one sentence for the operator: what matched, or what is wrong.
    """

    known_format: bool
    valid: bool
    reason: str


@dataclass(frozen=True, slots=True)
class _Rule:
    label: str
    couriers: frozenset[str]  # tracking_numbers courier codes
    exhaustive: bool


_UPS = _Rule("UPS", frozenset({"ups"}), True)
_USPS = _Rule("USPS", frozenset({"usps", "s10"}), True)
_FEDEX = _Rule("FedEx", frozenset({"fedex"}), True)
# Mail Innovations and SmartPost hand over to USPS for the last mile and carry USPS numbers.
_UPS_MI = _Rule("UPS Mail Innovations", frozenset({"ups", "usps"}), False)
_FEDEX_SP = _Rule("FedEx SmartPost", frozenset({"fedex", "usps"}), True)
_DHL = _Rule("DHL", frozenset({"dhl"}), False)
_ONTRAC = _Rule("OnTrac", frozenset({"ontrac"}), False)  # newer "D..." numbers not in the data


def _postal(label: str) -> _Rule:
    return _Rule(label, frozenset({"s10"}), False)


# Keys are lower-case Groupon carrier codes (the approved lists match case-insensitively).
_RULES: dict[str, _Rule] = {
    "ups": _UPS,
    "upsmi": _UPS_MI,
    "usps": _USPS,
    "uspsmm": _USPS,
    "fedex": _FEDEX,
    "fexp": _FEDEX,
    "fedexhd": _FEDEX,
    "fedexsp": _FEDEX_SP,
    "dhl": _DHL,
    "ont": _ONTRAC,
    "rym": _postal("Royal Mail"),
    "plf": _postal("Parcelforce"),
    "apt": _postal("An Post"),
    "dep": _postal("Deutsche Post"),
    "cor": _postal("Correos"),
    "spt": _postal("Swiss Post"),
    "sepst": _postal("PostNord Sweden"),
    "cso": _postal("Colissimo"),
    "lpc": _postal("La Poste"),
    "postnl": _postal("PostNL"),
}

# Formats distinctive enough (letters, fixed prefixes) to name another carrier with confidence.
# Purely numeric formats of a given length (DHL Express 10 digits, FedEx 12 or 15) are not: a
# DPD or Hermes number can happen to pass their check digit.
_DISTINCTIVE = frozenset({"ups", "s10", "ontrac", "amazon"})
# S10 service-indicator and country tables cover international mail only; domestic tracked
# products (e.g. Royal Mail Tracked 24/48) use other prefixes, so only shape + check digit count.
_S10_SOFT_ERRORS = frozenset({"Service Type", "Courier"})

_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def normalize_tracking_number(tracking: str) -> str:
    """Drop all whitespace and upper-case: the form that is checked (and should be sent)."""
    if tracking.isalnum():  # the usual number: no whitespace to drop (saves the regex)
        return tracking.upper()
    return re.sub(r"\s+", "", tracking).upper()


def check_tracking_number(carrier_code: str, tracking: str) -> TrackingCheck:
    """Check ``tracking`` against the formats of Groupon carrier ``carrier_code``.

    Spaces inside the number and letter case are ignored (see :func:`normalize_tracking_number`).
    Empty, whitespace-only, over-long numbers and numbers with control characters are always
    invalid.
    """
    return _check_cached(carrier_code, tracking)


# A pure function of its arguments, ~70 us a call (every format definition is tried); a
# shipment's lines share one number, and pre-flight re-checks held rows: cache recent answers.
@lru_cache(maxsize=8192)
def _check_cached(carrier_code: str, tracking: str) -> TrackingCheck:
    rule = _RULES.get(carrier_code.strip().lower())
    known = rule is not None
    problem = _hygiene(tracking)
    if problem:
        return TrackingCheck(known, False, problem)
    number = normalize_tracking_number(tracking)
    if rule is None:
        return TrackingCheck(
            False,
            True,
            f"no tracking-number format known for carrier {carrier_code!r}; not checked",
        )

    # The carrier's own formats first: a valid match there is the answer the full pass below
    # gives too (it returns at the first own format that matches without errors), without
    # trying the other ~15 definitions (~60 us a number).
    for definition in _own_definitions(rule.couriers):
        result = definition.test(number)
        if result is not None and not _errors(result):
            return TrackingCheck(True, True, f"matches the {result.product.name} format")

    own_failures: list[str] = []
    other_matches: list[tuple[str, str]] = []  # (courier code, product name)
    for definition in tracking_numbers.DEFINITIONS:
        result = definition.test(number)
        if result is None:
            continue
        errors = _errors(result)
        courier = result.courier.code
        if courier in rule.couriers:
            if not errors:
                return TrackingCheck(True, True, f"matches the {result.product.name} format")
            own_failures.append(f"{result.product.name}: {'; '.join(errors)}")
        elif not errors:
            other_matches.append((courier, _product_label(result)))

    distinctive = [name for courier, name in other_matches if courier in _DISTINCTIVE]
    if own_failures:
        reason = f"has a {rule.label} number format but fails its check ({own_failures[0]})"
        if distinctive:
            reason += f"; it is a valid {distinctive[0]} number"
        return TrackingCheck(True, False, reason)
    likely = [name for _, name in other_matches] if rule.exhaustive else distinctive
    if likely:
        return TrackingCheck(
            True,
            False,
            f"not a {rule.label} number format; it looks like a {likely[0]} number: "
            "check the carrier",
        )
    if rule.exhaustive:
        return TrackingCheck(True, False, f"does not match any known {rule.label} number format")
    return TrackingCheck(
        True,
        True,
        f"matches no known {rule.label} format; accepted because {rule.label} also issues "
        "numbers in formats not checked here",
    )


@lru_cache(maxsize=64)
def _own_definitions(couriers: frozenset[str]) -> tuple[Any, ...]:
    """The library's definitions of ``couriers``, in the library's order."""
    return tuple(d for d in tracking_numbers.DEFINITIONS if d.courier.code in couriers)


def _hygiene(tracking: str) -> str | None:
    if tracking.isascii() and tracking.isalnum() and len(tracking) <= MAX_TRACKING_LENGTH:
        # ASCII letters and digits only (the usual number): no check of _full_hygiene can
        # fail; skips its per-character Unicode lookups.
        return None
    return _full_hygiene(tracking)


def _full_hygiene(tracking: str) -> str | None:
    if not tracking or not tracking.strip():
        return "tracking number is empty"
    for ch in tracking:
        # Tabs and line breaks count too: they come from pasted cells and break CI's JSON field.
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            return f"tracking number contains a control character (U+{ord(ch):04X})"
    compact = normalize_tracking_number(tracking)
    if len(compact) > MAX_TRACKING_LENGTH or len(tracking) > 2 * MAX_TRACKING_LENGTH:
        return (
            f"tracking number is too long ({len(compact)} characters, "
            f"at most {MAX_TRACKING_LENGTH})"
        )
    if not compact.isascii() or not compact.replace("-", "").isalnum():
        return "tracking number may contain only letters, digits, spaces and '-'"
    return None


def _product_label(result: Any) -> str:
    if result.courier.code == "s10":
        return "S10 international postal"
    product: str = result.product.name
    courier: str = result.courier.name
    return product if product.startswith(courier) else f"{courier} {product}"


def _errors(result: Any) -> list[str]:
    """The package's validation errors, minus the S10 table checks we treat as advisory."""
    soft = _S10_SOFT_ERRORS if result.courier.code == "s10" else frozenset()
    return [f"{kind}: {text}" for kind, text in result.validation_errors if kind not in soft]
