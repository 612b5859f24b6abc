"""Validates sphr's FHIR exports with the R4B models of fhir.resources (run by .ci/fhir.sh).

    python fhir-validate.py consent.json audit.json bundle.json

Each file is a FHIR Bundle; the Bundle and every entry's resource (with the model of its own
resourceType) must parse and validate. Then, per file, what the export must hold:
  consent.json  searchset of Consent: at least one permit and one deny provision
  audit.json    searchset of AuditEvent: at least one success (0) and one failure (4 or 8)
  bundle.json   collection: Patient, Encounter, Condition and Procedure resources (Basic allowed)
Exits 1 with the reasons on any failure.
"""

import json
import sys
from collections import Counter

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle


def validate(path):
    problems = []
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    Bundle.model_validate(data)
    kinds = Counter()
    resources = []
    for i, entry in enumerate(data.get("entry", [])):
        res = entry["resource"]
        cls = get_fhir_model_class(res["resourceType"])
        try:
            cls.model_validate(res)
        except Exception as e:  # noqa: BLE001 - report every failure, then exit 1
            problems.append(f"{path}: entry {i} ({res['resourceType']} {res.get('id')}): {e}")
        kinds[res["resourceType"]] += 1
        resources.append(res)
    name = path.rsplit("/", 1)[-1]
    if name.startswith("consent"):
        types = Counter(r["provision"]["type"] for r in resources if r["resourceType"] == "Consent")
        if data["type"] != "searchset" or types["permit"] < 1 or types["deny"] < 1:
            problems.append(f"{path}: want a searchset with permit and deny Consents, got {dict(types)}")
    elif name.startswith("audit"):
        outcomes = Counter(r["outcome"] for r in resources if r["resourceType"] == "AuditEvent")
        if data["type"] != "searchset" or outcomes["0"] < 1 or outcomes["4"] + outcomes["8"] < 1:
            problems.append(f"{path}: want AuditEvents with outcomes 0 and 4/8, got {dict(outcomes)}")
    elif name.startswith("bundle"):
        want = {"Patient", "Encounter", "Condition", "Procedure"}
        if data["type"] != "collection" or not want <= set(kinds) or set(kinds) - want - {"Basic"}:
            problems.append(f"{path}: want a collection of {sorted(want)} (and Basic), got {dict(kinds)}")
    ids = [r.get("id") for r in resources]
    if len(set(ids)) != len(ids):
        problems.append(f"{path}: resource ids are not unique")
    print(f"{path}: Bundle ({data['type']}) valid, {len(resources)} resources {dict(kinds)}")
    return problems


def main():
    problems = []
    for path in sys.argv[1:]:
        try:
            problems += validate(path)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{path}: {e}")
    for p in problems:
        print("FAIL", p, file=sys.stderr)
    sys.exit(1 if problems or len(sys.argv) < 2 else 0)


if __name__ == "__main__":
    main()
