"""Element-aware mutations of real DICOM files: each output file is one source with one of its
data elements (or pixel-data fragments, or the JPEG stream inside) damaged the way a broken
modality, a truncated transfer or an attacker would: a length set to 0, odd, huge or off by
one; another VR; another tag; a numeric value set to an extreme; the transfer syntax or the
photometric interpretation swapped; a fragment's length changed; a cut inside a fragment; a
byte of the JPEG frame header changed. Byte-level fuzzers rarely get that far past the header.

usage: dicom_mutations.py --out DIR [--count N] [--seed S] SOURCE.dcm...

Writes DIR/<source stem>-<n>-<kind>.dcm and prints one line per file: its name and the mutation.
Used to seed fuzz_dicom's corpus (tools/sanitize.sh) and to find files that crash the decoder
(tests/fuzz/isolated/).
"""
import argparse
import os
import random
import struct
import sys

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"OV", b"SV", b"UV"}
VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OW", b"PN",
       b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM", b"UI", b"UL", b"UN", b"US", b"UT", b"ZZ", b"\x00\x00"]
SYNTAXES = [b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.1", b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.1.99",
            b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.51", b"1.2.840.10008.1.2.4.57", b"1.2.840.10008.1.2.4.70",
            b"1.2.840.10008.1.2.4.80", b"1.2.840.10008.1.2.4.90", b"1.2.840.10008.1.2.4.91", b"1.2.840.10008.1.2.5",
            b"1.2.3.4", b""]
PHOTOMETRIC = [b"MONOCHROME1", b"MONOCHROME2", b"RGB", b"YBR_FULL", b"YBR_FULL_422", b"PALETTE COLOR", b"XYZ", b""]


def walk(data):
    """(offset, tag, vr, header length, value length) of each top-level element (explicit VR LE),
    and the pixel data's fragments as (offset of item, length)."""
    elements, fragments = [], []
    at = 132 if data[128:132] == b"DICM" else 0
    while at + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, at)
        vr = data[at + 4:at + 6]
        if vr in LONG_VRS:
            if at + 12 > len(data):
                break
            length = struct.unpack_from("<I", data, at + 8)[0]
            header = 12
        else:
            length = struct.unpack_from("<H", data, at + 6)[0]
            header = 8
        elements.append((at, (group, element), vr, header, length))
        if (group, element) == (0x7FE0, 0x0010) and length == 0xFFFFFFFF:
            item = at + header
            while item + 8 <= len(data):
                item_length = struct.unpack_from("<I", data, item + 4)[0]
                fragments.append((item, item_length))
                if struct.unpack_from("<HH", data, item) == (0xFFFE, 0xE0DD):
                    break
                item += 8 + item_length
            break
        if length == 0xFFFFFFFF:
            break  # an undefined-length sequence: the rest is left as it is
        at += header + length
    return elements, fragments


def set_value(data, element, value):
    at, tag, vr, header, length = element
    padded = value + (b" " if len(value) % 2 else b"")
    if header == 8:
        return data[:at + 6] + struct.pack("<H", len(padded)) + padded + data[at + header + length:]
    return data[:at + 8] + struct.pack("<I", len(padded)) + padded + data[at + header + length:]


def mutate(data, rng):
    elements, fragments = walk(data)
    kind = rng.choice(["length", "vr", "tag", "number", "syntax", "photometric", "fragment-length", "cut-fragment",
                       "jpeg-header", "value-bytes"])
    if kind in ("fragment-length", "cut-fragment", "jpeg-header") and len(fragments) < 2:
        kind = "length"
    if kind == "length":
        at, tag, vr, header, length = rng.choice(elements)
        new = rng.choice([0, 1, length + 1, max(0, length - 1), length * 2 + 1, 0xFFFF, 0xFFFFFFFF, len(data)])
        if header == 8:
            return kind, data[:at + 6] + struct.pack("<H", new & 0xFFFF) + data[at + 8:]
        return kind, data[:at + 8] + struct.pack("<I", new & 0xFFFFFFFF) + data[at + 12:]
    if kind == "vr":
        at, tag, vr, header, length = rng.choice(elements)
        return kind, data[:at + 4] + rng.choice(VRS) + data[at + 6:]
    if kind == "tag":
        at, tag, vr, header, length = rng.choice(elements)
        group, element = rng.choice([(0xFFFE, 0xE000), (0xFFFE, 0xE0DD), (0x7FE0, 0x0010), (0x0028, 0x0010),
                                     (tag[0], tag[1] + 1), (rng.randrange(65536), rng.randrange(65536))])
        return kind, data[:at] + struct.pack("<HH", group & 0xFFFF, element & 0xFFFF) + data[at + 4:]
    if kind == "number":
        numeric = [e for e in elements if e[2] in (b"US", b"UL", b"SS") and e[4] in (2, 4)]
        if numeric:
            at, tag, vr, header, length = rng.choice(numeric)
            value = rng.choice([0, 1, 2, 3, 7, 9, 12, 15, 16, 17, 24, 32, 33, 64, 255, 0x7FFF, 0xFFFF, rng.randrange(65536)])
            raw = struct.pack("<H", value) if length == 2 else struct.pack("<I", value)
            return kind, data[:at + header] + raw + data[at + header + length:]
        kind = "value-bytes"
    if kind == "syntax":
        for e in elements:
            if e[1] == (0x0002, 0x0010):
                return kind, set_value(data, e, rng.choice(SYNTAXES))
        kind = "value-bytes"
    if kind == "photometric":
        for e in elements:
            if e[1] == (0x0028, 0x0004):
                return kind, set_value(data, e, rng.choice(PHOTOMETRIC))
        kind = "value-bytes"
    if kind == "fragment-length":
        at, length = rng.choice(fragments)
        new = rng.choice([0, 1, length + 1, max(0, length - 1), 0xFFFFFFFF, len(data)])
        return kind, data[:at + 4] + struct.pack("<I", new) + data[at + 8:]
    if kind == "cut-fragment":
        at, length = rng.choice(fragments[1:])
        return kind, data[:at + 8 + rng.randrange(max(1, length))]
    if kind == "jpeg-header":
        at, length = fragments[1]
        start = at + 8
        window = min(length, 700)
        offset = start + rng.randrange(max(1, window))
        value = rng.choice([0, 1, 2, 0xFF, 0x7F, 0xC0, 0xC3, 0xD9, rng.randrange(256)])
        return kind, data[:offset] + bytes([value]) + data[offset + 1:]
    # value-bytes: a few bytes inside one element's value
    at, tag, vr, header, length = rng.choice([e for e in elements if 0 < e[4] < 0xFFFFFFFF] or elements)
    offset = at + header + rng.randrange(max(1, min(length, 64)))
    return "value-bytes", data[:offset] + bytes([rng.randrange(256)]) + data[offset + 1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("sources", nargs="+")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    sources = [(os.path.splitext(os.path.basename(s))[0], open(s, "rb").read()) for s in args.sources]
    for n in range(args.count):
        stem, data = sources[n % len(sources)]
        kind, mutated = mutate(data, rng)
        name = f"{stem[-12:]}-{n:05d}-{kind}.dcm"
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(mutated)
        print(name, kind)


if __name__ == "__main__":
    sys.exit(main())
