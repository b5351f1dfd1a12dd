#!/usr/bin/env python3
"""Decodes an OTLP ExportProfilesServiceRequest with the official
opentelemetry-proto messages (PyPI `opentelemetry-proto`, which carries
profiles/v1development) and prints a JSON summary for the tests:
resource attributes, and per profile its sample type, period, the total per
leaf function, the functions with file and line, and each sample's link.

usage: decode_otlp_profiles.py REQUEST.pb
"""
import json
import sys

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import ExportProfilesServiceRequest


def any_value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def summarize(data):
    """The summary of one serialized request (a dict, JSON-ready)."""
    request = ExportProfilesServiceRequest()
    request.ParseFromString(data)
    d = request.dictionary
    strings = list(d.string_table)
    summary = {"resource": {}, "profiles": [], "tables": {
        "strings": len(strings), "functions": len(d.function_table), "locations": len(d.location_table),
        "mappings": len(d.mapping_table), "stacks": len(d.stack_table), "links": len(d.link_table),
        "attributes": len(d.attribute_table)}}
    # Entry 0 of every table is the empty one.
    summary["zero_entries_empty"] = all([
        strings[0] == "",
        d.function_table[0].name_strindex == 0,
        len(d.location_table[0].lines) == 0,
        len(d.stack_table[0].location_indices) == 0,
        len(d.link_table[0].trace_id) == 0,
    ])
    for resource_profiles in request.resource_profiles:
        for attribute in resource_profiles.resource.attributes:
            summary["resource"][attribute.key] = any_value(attribute.value)
        for scope_profiles in resource_profiles.scope_profiles:
            summary["scope"] = {"name": scope_profiles.scope.name, "version": scope_profiles.scope.version}
            for profile in scope_profiles.profiles:
                sample_type = strings[profile.sample_type.type_strindex] + "/" + strings[profile.sample_type.unit_strindex]
                by_leaf = {}
                by_function = {}
                links = []
                attributes = {}
                for sample in profile.samples:
                    stack = d.stack_table[sample.stack_index]
                    leaf = d.location_table[stack.location_indices[0]] if stack.location_indices else None
                    if leaf is not None and leaf.lines:
                        name = strings[d.function_table[leaf.lines[-1].function_index].name_strindex]
                    else:
                        name = "0x%x" % (leaf.address if leaf is not None else 0)
                    value = sum(sample.values)
                    by_leaf[name] = by_leaf.get(name, 0) + value
                    # Every function on the stack, once per sample.
                    names = set()
                    for location_index in stack.location_indices:
                        for line in d.location_table[location_index].lines:
                            names.add(strings[d.function_table[line.function_index].name_strindex])
                    for function_name in names:
                        by_function[function_name] = by_function.get(function_name, 0) + value
                    if sample.link_index:
                        link = d.link_table[sample.link_index]
                        links.append({"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(), "leaf": name, "value": value})
                    for index in sample.attribute_indices:
                        attribute = d.attribute_table[index]
                        key = strings[attribute.key_strindex]
                        attributes.setdefault(key, set()).add(str(any_value(attribute.value)))
                frames = []
                for stack_index in {sample.stack_index for sample in profile.samples}:
                    for location_index in d.stack_table[stack_index].location_indices:
                        location = d.location_table[location_index]
                        mapping = d.mapping_table[location.mapping_index]
                        for line in location.lines:
                            function = d.function_table[line.function_index]
                            frames.append({
                                "name": strings[function.name_strindex],
                                "file": strings[function.filename_strindex],
                                "line": line.line,
                                "mapping": strings[mapping.filename_strindex],
                                "address": location.address,
                            })
                summary["profiles"].append({
                    "sample_type": sample_type,
                    "period_type": strings[profile.period_type.type_strindex] + "/" + strings[profile.period_type.unit_strindex],
                    "period": profile.period,
                    "time_unix_nano": profile.time_unix_nano,
                    "duration_nano": profile.duration_nano,
                    "profile_id": profile.profile_id.hex(),
                    "samples": len(profile.samples),
                    "by_leaf": by_leaf,
                    "by_function": by_function,
                    "links": links,
                    "attributes": {key: sorted(values) for key, values in attributes.items()},
                    "frames": frames,
                })
    return summary


def main(path):
    with open(path, "rb") as handle:
        json.dump(summarize(handle.read()), sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])
