#!/usr/bin/env python3
"""Validates a speedscope file: the JSON Schema written from speedscope's
file-format-spec.ts, plus the rules the schema cannot express.

Usage: validate_speedscope.py FILE   (exit 0 = valid; errors on stderr)
"""
import json
import os
import sys

import jsonschema


def main(path):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "speedscope-file-format.schema.json")) as f:
        schema = json.load(f)
    with open(path) as f:
        document = json.load(f)
    jsonschema.validate(document, schema)
    frame_count = len(document["shared"]["frames"])
    errors = []
    for index, profile in enumerate(document["profiles"]):
        if profile["endValue"] < profile["startValue"]:
            errors.append(f"profile {index}: endValue < startValue")
        if profile["type"] != "sampled":
            continue
        if len(profile["samples"]) != len(profile["weights"]):
            errors.append(f"profile {index}: {len(profile['samples'])} samples, {len(profile['weights'])} weights")
        for stack in profile["samples"]:
            for frame in stack:
                if frame >= frame_count:
                    errors.append(f"profile {index}: frame index {frame} >= {frame_count}")
                    break
        total = sum(profile["weights"])
        if profile["endValue"] - profile["startValue"] < total:
            errors.append(f"profile {index}: weights sum {total} exceeds endValue - startValue")
    if errors:
        print("\n".join(errors[:20]), file=sys.stderr)
        return 1
    print(f"valid: {len(document['profiles'])} profiles, {frame_count} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
