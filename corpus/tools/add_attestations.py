#!/usr/bin/env python3
"""Give every corpus case that promotes INTO staging or prod (and has no
attestations.src.json yet) a verified-looking SLSA v1 provenance source for its own
artifact, signed by the trusted CI builder test key. Then run
`cargo run --example sign_corpus` to sign the sources into request.json.

Used once to bring the pre-trust corpus up to the provenance requirement; kept so
that a new case can be given the standard provenance the same way."""
import json, pathlib, sys

ROOT = pathlib.Path(__file__).resolve().parents[1] / "cases"

def provenance(request):
    return {
        "key": "builder-ed25519",
        "statement": {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": request["artifact"]["name"], "digest": request["artifact"]["digest"]}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://ci.example.com/buildtypes/container@v1",
                    "externalParameters": {"source": "git+https://github.com/example/payments-api@refs/heads/main"},
                    "resolvedDependencies": [{
                        "uri": "git+https://github.com/example/payments-api@refs/heads/main",
                        "digest": {"gitCommit": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"},
                    }],
                },
                "runDetails": {
                    "builder": {"id": "https://ci.example.com/builders/release@v2"},
                    "metadata": {"invocationId": "build-4711", "startedOn": "2026-11-24T08:00:00Z", "finishedOn": "2026-11-24T08:06:30Z"},
                },
            },
        },
    }

def main(names):
    for case in sorted(ROOT.iterdir()):
        if names and case.name not in names:
            continue
        req_path = case / "request.json"
        src_path = case / "attestations.src.json"
        if not req_path.is_file() or src_path.exists():
            continue
        try:
            request = json.loads(req_path.read_text())
        except json.JSONDecodeError:
            continue  # deliberately malformed cases stay as they are
        if request.get("to") not in ("staging", "prod") or not isinstance(request.get("artifact"), dict):
            continue
        src_path.write_text(json.dumps([provenance(request)], indent=2) + "\n")
        print("added", case.name)



def vuln_scan(request, critical=0, high=2):
    """A cosign vuln/v1 scan of the artifact, signed by the CI key (trusted for it)."""
    return {
        "key": "builder-ed25519",
        "statement": {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": request["artifact"]["name"], "digest": request["artifact"]["digest"]}],
            "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
            "predicate": {
                "invocation": {"uri": "https://ci.example.com/runs/4711", "event_id": "4711", "builder.id": "scanner"},
                "scanner": {
                    "uri": "pkg:github/aquasecurity/trivy@0.58.1",
                    "version": "0.58.1",
                    "db": {"uri": "pkg:github/aquasecurity/trivy-db", "version": "2026-11-25"},
                    "result": {"summary": {"critical": critical, "high": high, "medium": 7, "low": 12}},
                },
                "metadata": {"scanStartedOn": "2026-11-24T08:07:00Z", "scanFinishedOn": "2026-11-24T08:08:10Z"},
            },
        },
    }


def add_vuln_scans(names=()):
    """Append a clean vuln scan to every case promoting INTO prod that lacks one."""
    for case in sorted(ROOT.iterdir()):
        if names and case.name not in names:
            continue
        src_path = case / "attestations.src.json"
        if not src_path.is_file():
            continue
        request = json.loads((case / "request.json").read_text())
        if request.get("to") != "prod":
            continue
        sources = json.loads(src_path.read_text())
        if any("vuln" in s["statement"].get("predicateType", "") for s in sources):
            continue
        sources.append(vuln_scan(request))
        src_path.write_text(json.dumps(sources, indent=2) + "\n")
        print("added vuln scan", case.name)


if __name__ == "__main__":
    main(set(sys.argv[1:]))
    add_vuln_scans(set(sys.argv[1:]))
