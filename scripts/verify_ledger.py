#!/usr/bin/env python3
"""Independent verifier of a cutover ledger export (JSONL).

Uses only the Python standard library and the public `blake3` package — none
of cutover's code — so an auditor can check a trail without trusting the tool.

For every event line it checks: seq runs 1, 2, 3, … without gaps; prev_hash
equals the previous line's hash (zeros for seq 1); and

    hash == blake3(prev_hash || seq as u64 little-endian || base64decode(record))

The closing {"head": …} line must name the last seq and hash (a cut-off tail
fails). With --expect-head HASH the chain must also end at that hash (an
anchor recorded elsewhere, e.g. in a signed cutover report).

What it does not check: that the readable fields (at, run, kind, event) match
the hashed `record` bytes — that needs the binary decoder; `cutover ledger
verify --jsonl` checks it.

Exit status: 0 verified, 1 the trail is broken (the line is named), 2 usage.
"""

import argparse
import base64
import binascii
import json
import struct
import sys

try:
    from blake3 import blake3
except ImportError:  # pragma: no cover
    sys.stderr.write("verify_ledger.py needs the `blake3` package (pip install blake3; scripts/setup-tools installs it)\n")
    sys.exit(2)

ZERO = "0" * 64


def fail(line_no, message):
    sys.stderr.write(f"line {line_no}: {message}\n")
    sys.exit(1)


def parse_hash(line_no, value, field):
    if not isinstance(value, str) or len(value) != 64:
        fail(line_no, f"{field} is not a 64-digit hex hash")
    try:
        return bytes.fromhex(value)
    except ValueError:
        fail(line_no, f"{field} is not hex")


def verify(stream, expect_head=None):
    lines = stream.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        fail(1, "empty file")
    try:
        header = json.loads(lines[0])
    except ValueError as e:
        fail(1, f"header does not parse: {e}")
    if header != {"format": "cutover-ledger-jsonl", "version": 1}:
        fail(1, f"not a cutover ledger export (version 1) header: {header!r}")

    prev = bytes(32)
    expected_seq = 1
    for index, raw in enumerate(lines[1:], start=2):
        try:
            obj = json.loads(raw)
        except ValueError as e:
            fail(index, f"does not parse: {e}")
        if not isinstance(obj, dict):
            fail(index, "not a JSON object")
        if "head" in obj:
            if index != len(lines):
                fail(index + 1, "content after the closing head line")
            head = obj["head"]
            head_hash = parse_hash(index, head.get("hash"), "head.hash")
            if head.get("seq") != expected_seq - 1 or head_hash != prev:
                fail(index, f"head line says seq {head.get('seq')} but the chain ends at seq {expected_seq - 1} (or its hash differs)")
            if expect_head is not None and prev.hex() != expect_head.lower():
                fail(index, f"the chain ends at {prev.hex()}, not at the expected head {expect_head}")
            return expected_seq - 1, prev.hex()
        seq = obj.get("seq")
        if seq != expected_seq:
            fail(index, f"expected seq {expected_seq}, found {seq!r}: events missing, inserted or reordered")
        if parse_hash(index, obj.get("prev_hash"), "prev_hash") != prev:
            fail(index, f"seq {seq}: prev_hash does not match the previous event's hash")
        try:
            record = base64.b64decode(obj.get("record", ""), validate=True)
        except (binascii.Error, ValueError) as e:
            fail(index, f"seq {seq}: record is not base64: {e}")
        digest = blake3(prev + struct.pack("<Q", seq) + record).digest()
        if digest != parse_hash(index, obj.get("hash"), "hash"):
            fail(index, f"seq {seq}: hash does not match blake3(prev_hash || seq || record)")
        prev = digest
        expected_seq += 1
    fail(len(lines), f"no closing head line after seq {expected_seq - 1}: the export is truncated")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a JSONL file written by `cutover ledger export`")
    parser.add_argument("--expect-head", metavar="HASH", help="fail unless the chain ends at this hash")
    args = parser.parse_args()
    try:
        with open(args.export, "rb") as stream:
            events, head = verify(stream, args.expect_head)
    except OSError as e:
        sys.stderr.write(f"{args.export}: {e}\n")
        sys.exit(2)
    print(f"ok: {events} events, head {head}")


if __name__ == "__main__":
    main()
