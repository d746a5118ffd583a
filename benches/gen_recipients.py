#!/usr/bin/env python3
"""Writes a recipients CSV for the benchmarks: N rows, 5 columns, distinct
valid US numbers in the formats people export (national with brackets,
international with dashes, bare digits, dotted, with a leading 1)."""
import sys

def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    out = sys.stdout
    out.write("phone,first_name,last_name,city,customer_id\n")
    for i in range(n):
        # Area codes 201..989 cycle; exchanges 200..999; 10,000 lines each.
        area = (201, 212, 303, 312, 415, 503, 617, 646, 702, 917)[i % 10]
        exchange = 200 + (i // 10_000) % 800
        line = i % 10_000
        fmt = i % 5
        if fmt == 0:
            phone = f"({area}) {exchange}-{line:04d}"
        elif fmt == 1:
            phone = f"+1 {area}-{exchange}-{line:04d}"
        elif fmt == 2:
            phone = f"{area}{exchange}{line:04d}"
        elif fmt == 3:
            phone = f"{area}.{exchange}.{line:04d}"
        else:
            phone = f"1-{area}-{exchange}-{line:04d}"
        out.write(f'{phone},Name{i},Surname{i % 977},"City, {i % 313}",C{i:08d}\n')

if __name__ == "__main__":
    main()
