#!/usr/bin/env python3
"""Writes a recipients CSV for the benchmarks: N rows, 5 columns, valid US
numbers in the formats people export (national with brackets, international
with dashes, bare digits, dotted, with a leading 1).

    gen_recipients.py N [DUPLICATE_EVERY] [ZONES]

With DUPLICATE_EVERY = k (0: none), every k-th row repeats the number of an
earlier row (in another spelling); otherwise all numbers are distinct. With
ZONES = z, a `timezone` column cycles over z zones of ZONE_NAMES."""
import sys

# Thirty zones: whole, half and three-quarter hour offsets, both hemispheres.
ZONE_NAMES = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", "America/Phoenix", "America/Halifax",
    "America/St_Johns", "America/Sao_Paulo", "America/Mexico_City", "America/Bogota",
    "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Athens", "Europe/Moscow",
    "Africa/Lagos", "Africa/Johannesburg", "Asia/Dubai", "Asia/Karachi", "Asia/Kolkata",
    "Asia/Kathmandu", "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo",
    "Australia/Adelaide", "Australia/Sydney", "Pacific/Auckland",
)


def phone(i: int, fmt: int) -> str:
    # Ten area codes; exchanges 200..999; 10,000 lines each.
    area = (201, 212, 303, 312, 415, 503, 617, 646, 702, 917)[i % 10]
    exchange = 200 + (i // 10_000) % 800
    line = i % 10_000
    return (
        f"({area}) {exchange}-{line:04d}",
        f"+1 {area}-{exchange}-{line:04d}",
        f"{area}{exchange}{line:04d}",
        f"{area}.{exchange}.{line:04d}",
        f"1-{area}-{exchange}-{line:04d}",
    )[fmt]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    every = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    zones = ZONE_NAMES[: int(sys.argv[3])] if len(sys.argv) > 3 else ()
    out = sys.stdout
    out.write("phone,first_name,last_name,city,customer_id")
    out.write(",timezone\n" if zones else "\n")
    for i in range(n):
        # Row i repeats the number of row i - 26, in the next spelling.
        number = i - 26 if every and i % every == every - 1 and i >= 26 else i
        zone = f",{zones[i % len(zones)]}" if zones else ""
        out.write(
            f'{phone(number, i % 5)},Name{i},Surname{i % 977},"City, {i % 313}",C{i:08d}{zone}\n'
        )


if __name__ == "__main__":
    main()
