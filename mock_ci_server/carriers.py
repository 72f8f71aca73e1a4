"""Groupon's approved carrier codes per CI region: the simulator's own copy.

Sources: the UK list is the July 2018 list printed in Mintsoft's Groupon integration page
(``seeds/oms-integration-and-carrier-codes.txt``). The US list is the set of codes ShipWorks
sends (``GrouponCarrier``, see ``reference/peers.md``): the 2016-2019 set plus ``dhl``, which
ShipWorks has sent since June 2019 (Endicia DHL services) and for DHL eCommerce since 2022.
The other EU regions get the UK list: an assumption, no per-country list is public. IT also
accepts ``glsit`` (GrouponNode sends it). Codes are compared case-insensitively.
"""

from __future__ import annotations

UK_CODES: tuple[str, ...] = (
    "4SL", "APC", "ASDUK", "APT", "AXL", "ASDUT", "BCE", "BCEUT", "BTI", "BULT", "CSO", "COR",
    "DHL", "DHLG", "DHLNL", "DPDFR", "DPDIE", "DPDUK", "NTF", "DCH", "DEP", "ENVIALIA", "ERD",
    "FTWY", "FEDEX", "GLS", "HMS", "IMXP", "IKE", "POSTIUT", "LPCUT", "LPC", "NTL", "NTK", "PLW",
    "PLF", "PNLUT", "POSTNL", "RED", "RYM", "RMUT", "SAIL", "SEUR", "SKNT", "SEPST", "SEPSTUT",
    "SPTUT", "SPT", "TNT", "TNTIT", "TNTUT", "TRK", "UKM", "UPS", "WHISTL", "WISELOADS", "XDPX",
    "YDL",
)  # fmt: skip

US_CODES: tuple[str, ...] = (
    "usps", "uspsmm", "dhlgm", "dhl", "fedex", "fexp", "fedexhd", "fedexsp", "ups", "upsmi",
    "ont", "i-parcel",
)  # fmt: skip

_EU_REGIONS = ("DE", "FR", "ES", "IE", "NL", "BE")

APPROVED_CODES: dict[str, tuple[str, ...]] = {
    "US": US_CODES,
    "UK": UK_CODES,
    "GB": UK_CODES,
    "IT": (*UK_CODES, "glsit"),
    **dict.fromkeys(_EU_REGIONS, UK_CODES),
}

SUPPORTED_REGIONS: tuple[str, ...] = tuple(sorted(APPROVED_CODES))


class UnknownRegionError(ValueError):
    """The region has no approved-carrier list in the simulator."""


def default_codes(region: str) -> tuple[str, ...]:
    """Approved codes (as listed) for a region; raises UnknownRegionError naming the region."""
    codes = APPROVED_CODES.get(region.upper())
    if codes is None:
        raise UnknownRegionError(
            f"unknown region {region!r}; supported: {', '.join(SUPPORTED_REGIONS)}"
        )
    return codes


def normalise(codes: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Lower-cased code set used for case-insensitive comparison."""
    return frozenset(code.strip().lower() for code in codes)
