#!/usr/bin/env python3
"""Regenerates the test-only spec copies in this folder from HighLevel's
unmodified OpenAPI files (GoHighLevel/highlevel-api-docs @ 0af86a4c), applying
the patches listed in README.md — and nothing else.

usage: patch_specs.py /path/to/specs/highlevel
"""
import json
import pathlib
import sys

FILES = ["contacts", "businesses", "opportunities", "locations", "calendars", "forms"]
here = pathlib.Path(__file__).resolve().parent
upstream = pathlib.Path(sys.argv[1])


def patch_contacts(spec):
    schemas = spec["components"]["schemas"]
    # P1: dateOfBirth is documented as a date string ("YYYY-MM-DD", example "1990-09-25") but typed object.
    for dto in ("CreateContactDto", "UpdateContactDto", "UpsertContactDto"):
        prop = schemas[dto]["properties"].get("dateOfBirth")
        if prop is not None:
            prop["type"] = "string"
    # P2: numeric custom values are numbers (example 100) but typed object.
    for name in ("NumericField", "MonetoryField"):
        schemas[name]["properties"]["field_value"]["type"] = "number"


PATCHES = {"contacts": patch_contacts}

(here / "apps").mkdir(exist_ok=True)
(here / "common").mkdir(exist_ok=True)
for name in FILES:
    spec = json.loads((upstream / "apps" / f"{name}.json").read_text())
    PATCHES.get(name, lambda s: None)(spec)
    (here / "apps" / f"{name}.json").write_text(json.dumps(spec, indent=1) + "\n")
common = (upstream / "common" / "common-schemas.json").read_text()
(here / "common" / "common-schemas.json").write_text(common)
print("patched copies written to", here)
