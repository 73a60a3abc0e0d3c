#!/usr/bin/env python3
"""Checks every dashboard against Grafana's dashboard schema as published
in grafana-foundation-sdk (PyPI; pinned in .ci/run): each file is decoded
into the SDK's typed models and encoded again, and nothing may be lost or
changed on the way. A key the schema does not know (a typo, a field of
another Grafana version) is dropped by the round trip and reported here;
an enum value it does not know fails the decoding.

We keep the hand-written generator (dashboards/generate.py) rather than
building the dashboards with the SDK: the generator is 300 lines with no
dependency, reviewers read the JSON it writes, and this check gives the
schema's guarantee without making the SDK a build dependency.

usage: dashboards/schema-check.py FILE.json..."""
import json
import sys

try:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard
except ImportError:
    sys.exit("grafana-foundation-sdk is not installed: "
             "python3 -m pip install 'grafana-foundation-sdk==1769699998!10.1.0'")


def differences(before, after, path=""):
    if isinstance(before, dict):
        if not isinstance(after, dict):
            yield f"{path}: not an object after the round trip"
            return
        for k, v in before.items():
            if k not in after:
                yield f"{path}.{k}: not in the schema"
            else:
                yield from differences(v, after[k], f"{path}.{k}")
    elif isinstance(before, list):
        if not isinstance(after, list) or len(after) != len(before):
            yield f"{path}: list changed"
            return
        for i, (x, y) in enumerate(zip(before, after)):
            yield from differences(x, y, f"{path}[{i}]")
    elif before != after:
        yield f"{path}: {before!r} became {after!r}"


problems = []
for name in sys.argv[1:]:
    with open(name, encoding="utf-8") as f:
        data = json.load(f)
    try:
        model = Dashboard.from_json(data)
        again = json.loads(json.dumps(model, cls=JSONEncoder))
    except Exception as e:  # the SDK raises plain exceptions on bad values
        problems.append(f"{name}: does not decode: {e!r}")
        continue
    problems += [f"{name}{p}" for p in differences(data, again)]
if problems:
    sys.exit("\n".join(problems))
print(f"{len(sys.argv) - 1} dashboards match the schema")
