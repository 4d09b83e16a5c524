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

It also decodes every `record` (format version 1, laid out in
docs/ledger-format.md) and checks that the readable fields — at, run, kind,
event — say exactly what the hashed bytes say, so an edited readable part is
caught too.

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

# --- decoding of format-version-1 records (docs/ledger-format.md) ----------

RUN_KIND = ["full", "delta", "sample", "schema", "rollback", "map", "checkpoint", "benchmark"]
RUN_OUTCOME = ["completed", "completed_with_failures", "failed"]
WRITE_OP = ["create", "update", "delete"]
FAILURE_CLASS = ["transient", "terminal"]
COMPENSATION = ["deleted", "restored", "conflict", "already_gone"]


class Reader:
    def __init__(self, data):
        self.data = data
        self.at = 0

    def byte(self):
        if self.at >= len(self.data):
            raise ValueError("record ends early")
        b = self.data[self.at]
        self.at += 1
        return b

    def fixed(self, n):
        if self.at + n > len(self.data):
            raise ValueError("record ends early")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def uint(self):  # bincode 2 varint
        b = self.byte()
        if b < 251:
            return b
        width = {251: 2, 252: 4, 253: 8, 254: 16}.get(b)
        if width is None:
            raise ValueError(f"bad varint tag {b}")
        return int.from_bytes(self.fixed(width), "little")

    def sint(self):  # zigzag
        u = self.uint()
        return (u >> 1) ^ -(u & 1)

    def string(self):
        return self.fixed(self.uint()).decode("utf-8")

    def digest(self):
        return self.fixed(32).hex()

    def option(self, read):
        tag = self.byte()
        if tag == 0:
            return None
        if tag == 1:
            return read()
        raise ValueError(f"bad option tag {tag}")

    def enum(self, names):
        i = self.uint()
        if i >= len(names):
            raise ValueError(f"variant {i} out of range")
        return names[i]

    def vec(self, read):
        return [read() for _ in range(self.uint())]

    def micros(self):
        from datetime import datetime, timedelta, timezone
        t = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=self.sint())
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decode_body(r):
    variant = r.uint()
    if variant == 0:
        return "run_started", {"kind": r.enum(RUN_KIND), "source": r.string(), "destination": r.string(),
                               "map_hash": r.option(r.digest), "tool_version": r.string()}
    if variant == 1:
        return "map_confirmed", {"map_hash": r.digest()}
    if variant == 2:
        return "schema_changed", {"element": r.string(), "name": r.string(), "dest_id": r.string(),
                                  "created": bool(r.byte())}
    if variant == 3:
        return "extracted", {"entity": r.string(), "key": r.string(), "content_hash": r.digest(),
                             "modified_at": r.option(r.micros)}
    if variant == 4:
        return "transformed", {"entity": r.string(), "key": r.string(), "object": r.string(),
                               "payload_hash": r.digest(), "map_hash": r.digest()}
    if variant == 5:
        return "quarantined", {"entity": r.string(), "key": r.string(),
                               "reasons": r.vec(lambda: {"code": r.string(), "detail": r.string()})}
    if variant == 6:
        return "write_intended", {"op": r.enum(WRITE_OP), "object": r.string(), "entity": r.string(),
                                  "key": r.string(), "idempotency_key": r.string(), "payload_hash": r.digest(),
                                  "before_image": r.option(r.digest), "dest_id": r.option(r.string)}
    if variant == 7:
        return "write_confirmed", {"intent": r.uint(), "dest_id": r.string(), "response_hash": r.digest()}
    if variant == 8:
        return "write_failed", {"intent": r.uint(), "class": r.enum(FAILURE_CLASS), "status": r.option(r.uint),
                                "message": r.string()}
    if variant == 9:
        return "checkpoint", {"label": r.string(), "watermarks": r.vec(lambda: [r.string(), r.micros()])}
    if variant == 10:
        return "compensated", {"intent": r.uint(), "outcome": r.enum(COMPENSATION), "detail": r.string()}
    if variant == 11:
        return "run_finished", {"outcome": r.enum(RUN_OUTCOME), "detail": r.string()}
    raise ValueError(f"unknown event variant {variant}")


def decode_record(data):
    """(at, run, kind, body) of one encoded record; raises ValueError when it does not decode whole."""
    if not data or data[0] != 1:
        raise ValueError(f"unknown record format version {data[0] if data else None}")
    r = Reader(data)
    r.at = 1
    at = r.micros()
    run = r.uint()
    kind, body = decode_body(r)
    if r.at != len(data):
        raise ValueError(f"{len(data) - r.at} trailing bytes")
    return at, run, kind, body


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
        try:
            at, run, kind, body = decode_record(record)
        except (ValueError, UnicodeDecodeError) as e:
            fail(index, f"seq {seq}: record does not decode: {e}")
        if obj.get("at") != at or obj.get("run") != run or obj.get("kind") != kind or obj.get("event") != {kind: body}:
            fail(index, f"seq {seq}: the readable fields (at, run, kind, event) differ from the hashed record")
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
