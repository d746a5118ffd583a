#!/usr/bin/env python3
"""Writes agreement.csv: phone inputs, default regions and the verdict bpsms
must reach on each, taken from Google's libphonenumber rules and metadata as
the Python `phonenumbers` package implements them.

The `domain::phone` unit test reads every row on every `cargo test`. Run this
script again only when the metadata changes (a new rlibphonenumber), with the
`phonenumbers` release that carries the same metadata version:

    pip install phonenumbers==9.0.42
    python3 tests/data/phone/generate.py

Columns: `input`, `region` (the default region), `expected` (what bpsms must
answer: an E.164 number or `invalid`), `google` (libphonenumber's own
verdict) and `note`. Where bpsms deliberately answers differently from
libphonenumber, `note` says why, and the test refuses a row whose two
verdicts differ without one.
"""

import csv
import random
import re
import sys
import unicodedata
from pathlib import Path

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

# rlibphonenumber 2.2.15 carries libphonenumber metadata v9.0.42.
RUST_CRATE = "rlibphonenumber 2.2.15 (metadata 9.0.42)"

COUNTRIES = [
    "US", "CA", "PR", "JM", "BS", "GB", "GG", "IE", "DE", "AT", "CH", "FR", "BE",
    "NL", "LU", "IT", "SM", "VA", "ES", "PT", "SE", "NO", "DK", "FI", "PL", "CZ",
    "HU", "RO", "GR", "TR", "RU", "KZ", "UA", "IL", "AE", "SA", "EG", "NG", "KE",
    "ZA", "IN", "PK", "CN", "HK", "JP", "KR", "SG", "ID", "PH", "AU", "NZ", "BR",
    "AR", "MX", "CO", "CL",
]
DEFAULT_REGIONS = ["US", "GB", "DE", "FR", "IN", "BR", "AU", "JP"]
TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.VOIP,
]
FULL_WIDTH = str.maketrans("0123456789+", "０１２３４５６７８９＋")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def google(raw, region):
    """libphonenumber's verdict: the E.164 form of a valid number, else invalid."""
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException:
        return "invalid"
    if not phonenumbers.is_valid_number(number):
        return "invalid"
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def project(raw, region):
    """bpsms's verdict and, where it differs on purpose, why."""
    expected, note = project_before_length(raw, region)
    # libphonenumber accepts a few longer numbers (German toll-free ones).
    if len(expected) > 16 and expected != "invalid":
        return "invalid", "E.164, and so the API, allows at most 15 digits"
    return expected, note


def project_before_length(raw, region):
    float_cell = re.fullmatch(r"(\d{7,})\.0+", raw)
    if float_cell:
        return google(float_cell[1], region), "a spreadsheet's float is read back as the number it holds"
    scientific = re.fullmatch(r"(\d)\.(\d+)[eE]\+?(\d{1,2})", raw)
    if scientific and int(scientific[3]) == len(scientific[2]):
        number = scientific[1] + scientific[2]
        return google(number, region), "a spreadsheet's float is read back as the number it holds"
    if re.search(r"\d\s*(x|ext\.?)\s*\d+$", raw):
        return "invalid", "an extension is refused: an SMS cannot be sent to an extension"
    if any(c.isalpha() for c in raw.removeprefix("tel:")):
        return "invalid", "letters are refused: a vanity number is more likely a typo in a CSV"
    digits = "".join(str(unicodedata.decimal(c)) for c in raw if c.isdecimal())
    plus = raw.lstrip(" (").startswith(("+", "＋"))
    if not plus and digits.startswith("00"):
        return google("+" + digits[2:], None), "00 starts an international number in every region"
    return google(raw, region), ""


def formats(number, region, rng):
    """Ways people write one number, each with the default region to read it in."""
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    digits = e164[1:]
    others = rng.sample(DEFAULT_REGIONS, 2)
    yield national, region
    yield national.replace(" ", ""), region
    yield national.replace(" ", "."), region
    yield national.replace(" ", "-"), region
    yield e164, rng.choice(others)
    yield international, rng.choice(others)
    yield international.replace(" ", "-"), region
    yield "00" + digits, rng.choice(others)
    yield "00 " + international[1:], region
    yield "011 " + international[1:], "US"
    yield "(" + international.replace(" ", ") ", 1), rng.choice(others)
    yield international.translate(FULL_WIDTH), rng.choice(others)
    yield national.translate(FULL_WIDTH), region
    yield phonenumbers.format_number(number, PhoneNumberFormat.RFC3966), rng.choice(others)
    # The national trunk prefix in brackets, as people add it in Europe.
    prefix = phonenumbers.PhoneMetadata.metadata_for_region(region).national_prefix
    if prefix:
        rest = international.split(" ", 1)
        if len(rest) == 2:
            yield f"{rest[0]} ({prefix}){rest[1]}", rng.choice(others)


def mutations(number, rng):
    """Borderline numbers next to a valid one: a digit more, less or changed."""
    national = str(number.national_number)
    code = number.country_code
    yield f"+{code}{national[:-1]}"
    yield f"+{code}{national}{rng.randrange(10)}"
    at = rng.randrange(len(national))
    yield f"+{code}{national[:at]}{rng.randrange(10)}{national[at + 1:]}"
    yield f"+{code}{national[:at]}{national[at + 1:]}"


def cases(rng):
    for region in COUNTRIES:
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            yield from formats(number, region, rng)
            for raw in mutations(number, rng):
                yield raw, rng.choice(DEFAULT_REGIONS)
                yield raw[1 + len(str(number.country_code)):], region
        invalid = phonenumbers.invalid_example_number(region)
        if invalid is not None:
            yield phonenumbers.format_number(invalid, PhoneNumberFormat.E164), region
    # Strings of random digits, national and international.
    for _ in range(600):
        digits = "".join(str(rng.randrange(10)) for _ in range(rng.randint(2, 18)))
        region = rng.choice(DEFAULT_REGIONS)
        yield (digits, region) if rng.random() < 0.5 else ("+" + digits, region)
    # Calling codes that exist nowhere, or only for non-geographic services.
    for raw in ["+999 1234567", "+0 123456789", "+800 1234 5678", "+882 1234 5678", "+979 1234 56789"]:
        yield raw, "US"
    # What spreadsheets and CRMs make of one US number.
    for raw in [
        "4155550101.0", "1.4155550101E+10", "415-555-0101 x12", "415-555-0101 ext. 12",
        "1-800-FLOWERS", "1-800-356-9377", "+1 415 555 0101", "(415) 555-0101", "555-0101",
        "(123) 555-0199", "(555) 555-0199", "001 415 555 0101", "011 1 415 555 0101",
    ]:
        yield raw, "US"
    for _ in range(100):
        raw = "".join(rng.choice("0123456789 -.()" + LETTERS[:3]) for _ in range(rng.randint(1, 16)))
        if raw.strip(" -.()"):
            yield raw, rng.choice(DEFAULT_REGIONS)
    # One number in the decimal digits of other scripts (Unicode Nd), which
    # libphonenumber reads as the digits they are.
    for zero in ["０", "٠", "۰", "०", "০", "๐", "߀", "၀", "᠐", "𝟎", "𝟘"]:
        script = str.maketrans("0123456789", "".join(chr(ord(zero) + i) for i in range(10)))
        for raw, region in [("415 555 0101", "US"), ("+44 20 7946 0958", "US"),
                            ("00 49 30 901820", "GB"), ("+1 415 555 01", "US")]:
            yield raw.translate(script), region


def main():
    rng = random.Random(12)
    out = Path(__file__).with_name("agreement.csv")
    seen = set()
    rows = []
    for raw, region in cases(rng):
        if (raw, region) in seen or "," in raw or '"' in raw or raw.startswith("#"):
            continue
        seen.add((raw, region))
        expected, note = project(raw, region)
        verdict = google(raw, region)
        if expected == verdict:
            note = ""
        rows.append((raw, region, expected, verdict, note))
    with out.open("w", newline="", encoding="utf-8") as file:
        file.write(
            f"# Written by generate.py with phonenumbers {phonenumbers.__version__} "
            f"(libphonenumber metadata {phonenumbers.__version__}); bpsms uses {RUST_CRATE}.\n"
        )
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["input", "region", "expected", "google", "note"])
        writer.writerows(rows)
    n_different = sum(1 for row in rows if row[4])
    print(f"{len(rows)} cases, {n_different} where bpsms differs on purpose", file=sys.stderr)


if __name__ == "__main__":
    main()
