"""ISO 4217: every active currency code and its minor-unit exponent — the one table.

Amounts everywhere in payrecon are integers in the currency's minor unit (10^exponent of them
make one unit): 2599 USD is 25.99 dollars, 150000 VND is 150,000 dong (VND has no minor unit).
Fund codes and precious metals (XAU, XDR, …) have no exponent and are not payment currencies.
"""

from __future__ import annotations

# Exponent 2 unless listed below (ISO 4217 list one, 2025 edition; XCG replaces ANG, ZWG replaces ZWL).
_TWO = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE
CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL
HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR
MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK
SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD
XCG YER ZAR ZMW ZWG
"""
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"

MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(_TWO.split(), 2),
    **dict.fromkeys(_ZERO.split(), 0),
    **dict.fromkeys(_THREE.split(), 3),
    **dict.fromkeys(_FOUR.split(), 4),
}


def minor_units(currency: str) -> int | None:
    """The exponent of an ISO 4217 currency (2 for USD, 0 for VND), or None for a code that is not one."""
    return MINOR_UNITS.get(currency)


def format_amount(amount: int, currency: str) -> str:
    """`2599 USD` → `25.99 USD`, `150000 VND` → `150000 VND`: for messages people read."""
    exponent = MINOR_UNITS.get(currency, 0)
    if exponent == 0:
        return f"{amount} {currency}"
    whole, part = divmod(amount, 10**exponent)
    return f"{whole}.{part:0{exponent}d} {currency}"
