#!/usr/bin/env python3
"""Writes the time zones of phone number prefixes that bpsms embeds, and the
numbers that check them.

bpsms texts a recipient only within a window of hours in the recipient's
local time; when the CSV gives no `timezone`, the zone comes from the number.
The data is libphonenumber's prefix-to-time-zone map (Apache-2.0), as the
Python `phonenumbers` package carries it. Run this script (from any
directory) whenever that data should be refreshed:

    pip install phonenumbers==9.0.43 regex
    python3 scripts/timezones.py

It refuses any other `phonenumbers` release unless `--any-version` is given
(then update PHONENUMBERS_VERSION below and `TIMEZONE_METADATA` in
`src/domain/phone/zones.rs` to match). It writes two files:

`src/domain/phone/timezones.txt`, the table that `domain::phone::zones`
embeds. After its `#` header, one line per zone (`zone INDEX NAME`), then one
line per prefix (`DIGITS INDEX,INDEX…`, the digits including the country
calling code), or `DIGITS *` for a prefix whose numbers take the zones of
their whole calling code. A number takes the line of its longest prefix.

`tests/data/phone/timezones.csv`, numbers in E.164 with libphonenumber's
`time_zones_for_number` answer and the classification bpsms must reach; the
`domain::phone::zones` unit test checks every row.

What the table changes from libphonenumber's map, and why:

* libphonenumber answers a number that is not tied to a place (a mobile
  number outside Argentina, Brazil, China, Indonesia and Mexico, toll-free,
  premium rate, VoIP…) with the zones of its whole calling code, even where
  its map has a longer prefix for that range (Russian mobiles `+79` map to
  Moscow, Australian mobiles `+614` to Sydney). bpsms looks up prefixes only,
  without the number type, so this script finds the ranges where only such
  numbers exist (the `regex` module matches libphonenumber's patterns against
  a prefix with `partial=True`) and marks them `*`. A range holding both kinds
  is split digit by digit until each part holds one kind, or MAX_SPLIT_DIGITS
  past the map's prefix; the CSV rows with a `note` are numbers where a range
  left mixed makes bpsms answer differently.
* Zone names that tzdb has since renamed are written under their current
  name (`Asia/Calcutta` becomes `Asia/Kolkata`), see RENAMED_ZONES; the CSV
  keeps libphonenumber's own names in its `python` column.

The output is deterministic: the numbers are example numbers and numbers
drawn by a seeded generator.
"""

import argparse
import csv
import random
import sys
from pathlib import Path

import phonenumbers
import regex
from phonenumbers import PhoneNumberFormat, PhoneNumberType, phonenumberutil
from phonenumbers.timezone import time_zones_for_number
from phonenumbers.tzdata import TIMEZONE_DATA

PHONENUMBERS_VERSION = "9.0.43"
ROOT = Path(__file__).resolve().parent.parent
TABLE_PATH = ROOT / "src/domain/phone/timezones.txt"
CSV_PATH = ROOT / "tests/data/phone/timezones.csv"

# libphonenumber still writes some zones under names that tzdb has replaced.
# The old names survive in tzdb only as links (some to a merged zone of
# another country, Africa/Asmera to Africa/Nairobi), so they are written as
# the current name of the same place. Asia/Choibalsan was merged into
# Asia/Ulaanbaatar in tzdb 2024b: their clocks have agreed since 2008.
RENAMED_ZONES = {
    "Africa/Asmera": "Africa/Asmara",
    "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "America/Godthab": "America/Nuuk",
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Choibalsan": "Asia/Ulaanbaatar",
    "Asia/Katmandu": "Asia/Kathmandu",
    "Asia/Rangoon": "Asia/Yangon",
    "Atlantic/Faeroe": "Atlantic/Faroe",
    "Pacific/Enderbury": "Pacific/Kanton",
    "Pacific/Ponape": "Pacific/Pohnpei",
    "Pacific/Truk": "Pacific/Chuuk",
}
# ICU's name for "no zone known"; bpsms reads it as Unknown.
UNKNOWN_ZONE = "Etc/Unknown"
COUNTRY_WIDE = "*"

# The number types libphonenumber ties to a place: fixed lines everywhere,
# mobiles only in these countries (phonenumberutil._GEO_MOBILE_COUNTRIES).
GEO_MOBILE_COUNTRY_CODES = frozenset(phonenumberutil._GEO_MOBILE_COUNTRIES)
# Number types that are never tied to a place, as metadata attributes.
NON_GEOGRAPHIC_DESCS = [
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
]
ALL_TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]
# How many digits past a table prefix a range holding both kinds of numbers
# is split. NANP numbers have their type decided by the exchange, three
# digits past the area code.
MAX_SPLIT_DIGITS = 3
# US and Canadian area codes that get a number in the CSV whatever the table
# holds: codes that straddle zones (701, 907, 208, 541, 605, 850, 867, 709),
# toll-free codes, and codes far from the usual zones (915, 306).
NAMED_AREA_CODES = ["701", "907", "800", "833", "844", "855", "866", "877", "888",
                    "208", "541", "605", "850", "915", "306", "867", "709"]
SEED = 20260522
TRIES_PER_PREFIX = 400
# Ranges that hold both kinds of numbers: how many of a table line's are
# searched for numbers where bpsms differs, and how many such numbers go
# into the CSV per line.
MIXED_RANGES_TRIED = 20
MIXED_SAMPLES = 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--any-version",
        action="store_true",
        help=f"accept a phonenumbers release other than {PHONENUMBERS_VERSION}",
    )
    args = parser.parse_args()
    if phonenumbers.__version__ != PHONENUMBERS_VERSION and not args.any_version:
        sys.exit(
            f"phonenumbers {phonenumbers.__version__} is installed, this script is "
            f"pinned to {PHONENUMBERS_VERSION}: run `pip install "
            f"phonenumbers=={PHONENUMBERS_VERSION}`, or pass --any-version and "
            "update PHONENUMBERS_VERSION and TIMEZONE_METADATA"
        )

    warn_about_old_names()
    source = {prefix: current_names(zones) for prefix, zones in TIMEZONE_DATA.items()}
    check_country_codes(source)
    table, mixed = mark_country_wide_ranges(source)
    numbers = test_numbers(table, mixed)
    rows = [csv_row(number, table) for number in numbers]

    write_table(table)
    write_csv(rows)
    n_differ = sum(1 for row in rows if row["note"])
    print(
        f"{len(table)} prefixes ({sum(1 for z in table.values() if z == COUNTRY_WIDE)} "
        f"marked {COUNTRY_WIDE}) to {TABLE_PATH.relative_to(ROOT)}; {len(rows)} numbers "
        f"({n_differ} where bpsms differs from libphonenumber) to "
        f"{CSV_PATH.relative_to(ROOT)}"
    )


def current_names(zones):
    """libphonenumber's zones under tzdb's current names, sorted, once each."""
    return tuple(sorted({RENAMED_ZONES.get(zone, zone) for zone in zones}))


def warn_about_old_names():
    """Says which names of libphonenumber's map tzdb's zone.tab does not list
    (where this machine has one) and RENAMED_ZONES does not rename: a newer
    map may use a name that tzdb has since replaced."""
    names = {zone for zones in TIMEZONE_DATA.values() for zone in zones}
    for stale in sorted(set(RENAMED_ZONES) - names):
        print(f"note: RENAMED_ZONES renames {stale}, which the map no longer uses",
              file=sys.stderr)
    zone_tab = Path("/usr/share/zoneinfo/zone.tab")
    if not zone_tab.exists():
        return
    listed = {
        fields[2]
        for fields in (line.rstrip("\n").split("\t") for line in zone_tab.open(encoding="utf-8"))
        if len(fields) >= 3 and not fields[0].startswith("#")
    }
    for name in sorted(names - listed - set(RENAMED_ZONES) - {UNKNOWN_ZONE}):
        print(f"warning: {name} is not in {zone_tab}: if tzdb renamed it, add it to "
              "RENAMED_ZONES", file=sys.stderr)


def country_code_of(digits):
    """The country calling code that starts `digits`, or None."""
    for length in (1, 2, 3):
        if int(digits[:length]) in phonenumberutil.COUNTRY_CODE_TO_REGION_CODE:
            return digits[:length]
    return None


def check_country_codes(source):
    """bpsms reads a number's calling code as the shortest prefix in the table
    that starts it: every prefix must start with a calling code that has its
    own line."""
    for prefix in source:
        country_code = country_code_of(prefix)
        if country_code is None or country_code not in source:
            sys.exit(f"prefix {prefix} does not start with a calling code of its own in the table")


def descs(country_code):
    """The metadata of every region that uses `country_code`."""
    found = []
    for region in phonenumberutil.COUNTRY_CODE_TO_REGION_CODE.get(int(country_code), ()):
        if region == phonenumberutil.REGION_CODE_FOR_NON_GEO_ENTITY:
            metadata = phonenumbers.PhoneMetadata.metadata_for_nongeo_region(int(country_code))
        else:
            metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if metadata is not None:
            found.append(metadata)
    return found


_compiled = {}


def may_start(desc, national_digits):
    """Whether some number of this type may start with these digits."""
    if desc is None or desc.national_number_pattern is None:
        return False
    pattern = desc.national_number_pattern
    if pattern not in _compiled:
        _compiled[pattern] = regex.compile(pattern)
    return _compiled[pattern].fullmatch(national_digits, partial=True) is not None


def kinds_of_numbers(prefix):
    """(geographic, non_geographic): whether numbers that libphonenumber ties
    to a place, and numbers it does not, may start with `prefix`. It reads the
    type as libphonenumber does (`_number_type_helper`) but over every number
    that may start with the prefix, so both may be true of a range that holds
    only one kind."""
    country_code = country_code_of(prefix)
    national = prefix[len(country_code):]
    geographic = non_geographic = False
    for metadata in descs(country_code):
        if not may_start(metadata.general_desc, national):
            continue
        if any(may_start(getattr(metadata, name), national) for name in NON_GEOGRAPHIC_DESCS):
            non_geographic = True
        if may_start(metadata.fixed_line, national):
            geographic = True
        if may_start(metadata.mobile, national):
            if (int(country_code) in GEO_MOBILE_COUNTRY_CODES
                    or metadata.same_mobile_and_fixed_line_pattern):
                geographic = True
            else:
                non_geographic = True
    return geographic, non_geographic


def mark_country_wide_ranges(source):
    """The table, libphonenumber's map with `*` on the ranges where only
    numbers not tied to a place exist, and the ranges that still hold both
    kinds after MAX_SPLIT_DIGITS (bpsms gives them the zones of the range)."""
    table = dict(source)
    mixed = []
    for prefix in sorted(source, key=lambda p: (len(p), p)):
        if prefix == country_code_of(prefix) or prefix not in table:
            continue
        mark(prefix, source, table, len(prefix) + MAX_SPLIT_DIGITS, mixed)
    return table, mixed


def mark(prefix, source, table, max_digits, mixed):
    """Marks `prefix` (a table prefix, or a part of one being split) `*` if
    only numbers not tied to a place start with it, and splits it if both
    kinds do."""
    country_code = country_code_of(prefix)
    if longest_zones(prefix, source) == source[country_code] and len(source[country_code]) == 1:
        return  # the whole country has the one zone this range has
    geographic, non_geographic = kinds_of_numbers(prefix)
    if not non_geographic:
        return
    if not geographic:
        table[prefix] = COUNTRY_WIDE
        # libphonenumber ignores the longer prefixes for such numbers.
        for longer in [p for p in table if p != prefix and p.startswith(prefix)]:
            del table[longer]
        return
    if len(prefix) >= max_digits:
        mixed.append(prefix)
        return
    for digit in "0123456789":
        part = prefix + digit
        if part not in source:  # a table prefix is marked on its own
            mark(part, source, table, max_digits, mixed)


def longest_zones(digits, table):
    """The zones (or `*`) of the longest table prefix of `digits`."""
    for length in range(len(digits), 0, -1):
        if digits[:length] in table:
            return table[digits[:length]]
    return None


def classify(digits, table):
    """What bpsms answers for a number, as `domain::phone::zones` does: a
    match on the calling code's own line or on a `*` line is country-level."""
    country_code = next((digits[:n] for n in (1, 2, 3) if digits[:n] in table), None)
    if country_code is None:
        return "unknown"
    zones = longest_zones(digits, table)
    if zones == COUNTRY_WIDE:
        return country_level(table[country_code])
    if longest_prefix(digits, table) == country_code:
        return country_level(zones)
    return local(zones)


def longest_prefix(digits, table):
    for length in range(len(digits), 0, -1):
        if digits[:length] in table:
            return digits[:length]
    return None


def country_level(zones):
    return "country-wide" if len([z for z in zones if z != UNKNOWN_ZONE]) > 1 else local(zones)


def local(zones):
    known = [zone for zone in zones if zone != UNKNOWN_ZONE]
    return "local:" + " ".join(known) if known else "unknown"


def libphonenumber_class(number):
    """libphonenumber's answer for `number` in bpsms's terms: country-wide
    when it gave the zones of the whole calling code and there are several."""
    answer = tuple(time_zones_for_number(number))
    if answer == (UNKNOWN_ZONE,):
        return answer, "unknown"
    country_code = str(number.country_code)
    number_type = phonenumbers.number_type(number)
    digits = e164_digits(number)
    country_wide = (
        not phonenumberutil.is_number_type_geographical(number_type, number.country_code)
        or longest_prefix(digits, TIMEZONE_DATA) == country_code
    )
    zones = current_names(answer)
    return answer, (country_level(zones) if country_wide else local(zones))


def e164_digits(number):
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]


def test_numbers(table, mixed):
    """Example numbers of every region and type, one number in each named US
    and Canadian area code, one number under every line of the table, and
    numbers where bpsms differs from libphonenumber in the ranges that still
    hold both kinds of numbers."""
    numbers = {}

    def add(number):
        if number is not None and phonenumbers.is_valid_number(number):
            numbers.setdefault(e164_digits(number), number)

    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in ALL_TYPES:
            add(phonenumbers.example_number_for_type(region, number_type))
    for country_code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        add(phonenumbers.example_number_for_non_geo_entity(country_code))

    generator = random.Random(SEED)
    for area_code in NAMED_AREA_CODES:
        add(number_under("1" + area_code, table, generator))
    for prefix in sorted(table):
        add(number_under(prefix, table, generator))
    for number in differing_numbers(mixed, table, generator):
        add(number)
    return [numbers[digits] for digits in sorted(numbers)]


def differing_numbers(mixed, table, generator):
    """Up to MIXED_SAMPLES numbers under the mixed ranges of each table line
    that bpsms and libphonenumber answer differently."""
    by_line = {}
    for prefix in mixed:
        by_line.setdefault(longest_prefix(prefix, table), []).append(prefix)
    found = []
    for line in sorted(by_line):
        ranges = by_line[line]
        n_found = 0
        for prefix in generator.sample(ranges, min(len(ranges), MIXED_RANGES_TRIED)):
            number = number_under(prefix, table, generator, differing=True)
            if number is not None:
                found.append(number)
                n_found += 1
            if n_found == MIXED_SAMPLES:
                break
    return found


def number_under(prefix, table, generator, differing=False):
    """A valid number that starts with `prefix`, preferably one whose longest
    table prefix is `prefix` itself, or None when none turns up. With
    `differing`, only one that bpsms and libphonenumber answer differently."""
    country_code = country_code_of(prefix)
    lengths = sorted({
        length
        for metadata in descs(country_code)
        for length in metadata.general_desc.possible_length
        if len(country_code) + length > len(prefix)
    })
    fallback = None
    for _ in range(TRIES_PER_PREFIX):
        if not lengths:
            break
        total = len(country_code) + generator.choice(lengths)
        digits = prefix + "".join(generator.choice("0123456789") for _ in range(total - len(prefix)))
        try:
            number = phonenumbers.parse("+" + digits, None)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(number):
            continue
        if differing:
            if classify(digits, table) != libphonenumber_class(number)[1]:
                return number
            continue
        if longest_prefix(digits, table) == prefix:
            return number
        fallback = fallback or number
    return fallback


def csv_row(number, table):
    digits = e164_digits(number)
    answer, google = libphonenumber_class(number)
    expected = classify(digits, table)
    note = ""
    if expected != google:
        note = explain(number, digits, table)
    return {
        "number": "+" + digits,
        "type": phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(number)),
        "python": shown_answer(answer, number),
        "libphonenumber": google,
        "expected": expected,
        "note": note,
    }


def shown_answer(answer, number):
    """libphonenumber's answer as it gave it, except that the zones of a whole
    calling code (up to 42 names) are summed up when there are more than 3."""
    country_code = str(number.country_code)
    if answer == TIMEZONE_DATA.get(country_code) and len(answer) > 3:
        return f"all {len(answer)} zones of +{country_code}"
    return " ".join(answer)


def explain(number, digits, table):
    """Why bpsms differs from libphonenumber on `number`: the only way it can
    is a range that holds numbers of both kinds down to MAX_SPLIT_DIGITS."""
    number_type = phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(number))
    prefix = longest_prefix(digits, table)
    range_digits = digits[:len(prefix) + MAX_SPLIT_DIGITS]
    if not kinds_of_numbers(digits)[0]:
        return (
            f"bpsms reads prefixes only and the range +{range_digits} holds both "
            f"numbers tied to a place and {number_type} numbers; libphonenumber answers "
            "the latter with the zones of the whole calling code, bpsms with the range's"
        )
    return (
        f"the digits of this {number_type} number also start longer numbers tied to "
        f"a place (+{prefix}); bpsms reads prefixes only and gives it their zones"
    )


def write_table(table):
    zones = sorted({zone for value in table.values() if value != COUNTRY_WIDE for zone in value})
    index = {zone: position for position, zone in enumerate(zones)}
    lines = [
        "# Time zones of phone number prefixes: libphonenumber's prefix-to-time-zone",
        "# map (Copyright The Libphonenumber Authors, Apache License 2.0), as the",
        f"# Python package phonenumbers {phonenumbers.__version__} carries it.",
        "# Generated by scripts/timezones.py, do not edit: see that script for what",
        "# it changes from libphonenumber's map and why.",
        "# `zone INDEX NAME` numbers the IANA zones; `DIGITS INDEX,INDEX…` gives the",
        "# zones of the numbers whose longest prefix in this table is DIGITS (the",
        "# country calling code included); `DIGITS *` says they take the zones of",
        "# their calling code's own line (mobile, toll-free, … ranges).",
    ]
    lines += [f"zone {index[zone]} {zone}" for zone in zones]
    for prefix in sorted(table):
        value = table[prefix]
        shown = COUNTRY_WIDE if value == COUNTRY_WIDE else ",".join(str(index[z]) for z in value)
        lines.append(f"{prefix} {shown}")
    TABLE_PATH.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_csv(rows):
    with CSV_PATH.open("w", newline="", encoding="utf-8") as out:
        out.write(
            f"# Written by scripts/timezones.py with phonenumbers {phonenumbers.__version__}. "
            "python: libphonenumber's time_zones_for_number (its zone names); "
            "libphonenumber: that answer in bpsms's terms (current zone names); "
            "expected: what domain::phone::zones must answer; note: why they differ.\n"
        )
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
