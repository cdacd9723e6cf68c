#!/usr/bin/env python3
"""Runs the Singer SDK's own flattening on the payloads a tap run emitted, and compares.

    sdk_flatten.py DEPTH MAX_KEY_LENGTH PAYLOADS.jsonl TAP_OUTPUT.jsonl STREAM

PAYLOADS: the bodies posted, one a line, in order. TAP_OUTPUT: the tap's stdout, flattened at
DEPTH. The payloads are read as the SDK reads JSON (`deserialize_json`: decimals), their nested
schema is inferred with the tap's type rules (every field nullable; integers beyond 64 bits are
numbers), and the SDK flattens both: through its mapper (`SameRecordTransform`, which flattens
only at depth > 0) and, at depth > 0, through `flatten_schema` / `flatten_record` directly.

Prints one JSON object: {"records": n, "sdk_columns": [...], "tap_columns": [...],
"record_only": [...], "type_conflicts": [...], "errors": [...]}; "errors" empty means equal:
- each RECORD's payload fields equal the SDK's flattened record (JSON texts compared as strings);
- the SCHEMA's payload properties are the SDK schema's plus the columns only the SDK's records
  carry (a field that is an object in one message and not in another: "record_only");
- each column's types equal the SDK schema's, except those type conflicts, where they equal the
  types of the values the SDK's records hold.
"""
import json
import sys

from singer_sdk.helpers._flattening import (
    FlatteningOptions,
    flatten_record,
    flatten_schema,
)
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib.json import deserialize_json

depth, max_key_length = int(sys.argv[1]), int(sys.argv[2])
payloads = [deserialize_json(line) for line in open(sys.argv[3], encoding="utf-8") if line.strip()]
stream = sys.argv[5]
TAP_FIELDS = ("_sdc_", "__sdc_", "webhook_")


def is_tap_field(name):
    return name.startswith(TAP_FIELDS)


def kind(v):
    """The tap's type of one value (tap/inference.rs)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer" if -(2**63) <= v < 2**63 else "number"
    if isinstance(v, (float,)) or type(v).__name__ == "Decimal":
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def widen(types):
    if "number" in types:
        types.discard("integer")
    return types


def infer(values):
    """A nested JSON schema of these values, every field nullable, objects with properties."""
    types, children = {"null"}, {}
    for v in values:
        types.add(kind(v))
        if isinstance(v, dict):
            for k, c in v.items():
                children.setdefault(k, []).append(c)
    schema = {"type": sorted(widen(types))}
    if "object" in types:
        schema["properties"] = {k: infer(vs) for k, vs in children.items()}
    return schema


props = {}
for p in payloads:
    for k, v in p.items():
        props.setdefault(k, []).append(v)
nested = {"type": "object", "properties": {k: infer(vs) for k, vs in props.items()}}

options = FlatteningOptions(enabled=True, max_level=depth, max_key_length=max_key_length)
mapper = SameRecordTransform(stream, nested, [], options)
sdk_schema = mapper.transformed_schema
sdk_records = [mapper.transform(p) for p in payloads]
errors = []
if depth > 0:
    direct = flatten_schema(nested, depth, max_key_length=max_key_length)
    if direct != sdk_schema:
        errors.append("flatten_schema differs from the mapper's schema")
    for p, r in zip(payloads, sdk_records):
        if flatten_record(p, direct, depth, max_key_length=max_key_length) != r:
            errors.append(f"flatten_record differs from the mapper's record: {p}")

lines = [deserialize_json(l) for l in open(sys.argv[4], encoding="utf-8") if l.strip()]
schemas = [m for m in lines if m["type"] == "SCHEMA" and m["stream"] == stream]
records = [m["record"] for m in lines if m["type"] == "RECORD" and m["stream"] == stream]
tap_props = {k: v for k, v in schemas[-1]["schema"]["properties"].items() if not is_tap_field(k)}
if len(records) != len(sdk_records):
    errors.append(f"{len(records)} records, the SDK {len(sdk_records)}")
for i, (ours, theirs) in enumerate(zip(records, sdk_records)):
    ours = {k: v for k, v in ours.items() if not is_tap_field(k)}
    if ours != theirs:
        diff = {k: (ours.get(k, "<absent>"), theirs.get(k, "<absent>"))
                for k in set(ours) | set(theirs) if ours.get(k, "<absent>") != theirs.get(k, "<absent>")}
        errors.append(f"record {i}: tap vs SDK {json.dumps(diff, default=str)[:2000]}")

sdk_props = sdk_schema["properties"]
in_records = {k for r in sdk_records for k in r}
record_only = sorted(in_records - set(sdk_props))
if set(tap_props) != set(sdk_props) | set(record_only):
    errors.append(f"columns: tap only {sorted(set(tap_props) - set(sdk_props) - set(record_only))}, "
                  f"SDK only {sorted(set(sdk_props) | set(record_only) - set(tap_props))}")


def types_of(schema):
    t = schema.get("type", [])
    return {t} if isinstance(t, str) else set(t)


conflicts = []
for name, schema in tap_props.items():
    held = widen({"null"} | {kind(r[name]) for r in sdk_records if name in r})
    # A JSON text column holds strings.
    if depth > 0:
        held = {"string" if t in ("array", "object") else t for t in held}
    ours = types_of(schema)
    if name in sdk_props and types_of(sdk_props[name]) == ours:
        continue
    if name in sdk_props:
        conflicts.append(name)
    if ours != held:
        errors.append(f"column {name}: tap types {sorted(ours)}, SDK schema "
                      f"{sorted(types_of(sdk_props.get(name, {})))}, SDK record values {sorted(held)}")

print(json.dumps({
    "records": len(records),
    "sdk_columns": sorted(sdk_props),
    "tap_columns": sorted(tap_props),
    "record_only": record_only,
    "type_conflicts": sorted(conflicts),
    "errors": errors,
}))
