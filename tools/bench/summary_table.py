"""Prints the JSON lines the benchmarks append with --summary as one Markdown table.

usage: summary_table.py SUMMARY.jsonl
"""
import json
import sys


def number(x):
    return f"{x:,.0f}" if x >= 1000 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    if not rows:
        print("(no figures: every benchmark failed or was skipped)")
        return
    print("| area | case | unit | Python | pneumo | pneumo's speed-up |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['area']} | {r['case']} | {r['unit']} | {number(r['python'])} | {number(r['pneumo'])} "
              f"| {r['speed_up']:.2f}x |")
    print()
    print("speed-up: pneumo / Python for rates, Python / pneumo for times and memory; above 1 is pneumo ahead.")


if __name__ == "__main__":
    main()
