"""Drive a running promo-policy sidecar with a real OPA client library (PyPI
`opa-python-client`), as a new user would, and print one line per check:
`ok NAME` or `FAIL NAME: why`. Exits 1 when any check fails, 2 when the client
library is missing. Run by tests/opa_compat.rs; usage:

    check.py BASE_URL REQUEST_JSON
"""

import asyncio
import json
import sys
import traceback
from urllib.parse import urlparse

try:
    import requests
    from opa_client import AsyncOpaClient, OpaClient
    from opa_client.errors import (
        DeletePolicyError,
        PolicyNotFoundError,
        RegoParseError,
    )
except ImportError as e:  # the Rust test tells CI from a developer's machine
    print(f"MISSING opa-python-client: {e}")
    sys.exit(2)


def main():
    base, request_path = sys.argv[1], sys.argv[2]
    url = urlparse(base)
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    client = OpaClient(host=url.hostname, port=url.port, timeout=10, retries=0)
    failures = 0
    for name, check in CHECKS:
        try:
            check(client, request)
            print(f"ok {name}", flush=True)
        except Exception as e:  # every failure is reported, not just the first
            failures += 1
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            print(f"FAIL {name}: {detail}", flush=True)
    client.close_connection()
    sys.exit(1 if failures else 0)


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def raises(kind, call):
    """The exception `call` raises, which must be a `kind`."""
    try:
        value = call()
    except kind as e:
        return e
    raise AssertionError(f"expected {kind.__name__}, got {value!r}")


def connection(client, _request):
    # GET /v1/policies/ (trailing slash): answered with a redirect, as OPA does.
    expect(client.check_connection() is True, "check_connection")
    expect(client.check_health(), "check_health")


def list_policies(client, _request):
    ids = client.get_policies_list()
    expect(ids and all(i.endswith(".rego") for i in ids), f"policy ids {ids}")
    raw = client.get_policy(ids[0])["result"]["raw"]
    expect("package" in raw, "a module's raw text")


def missing_policy(client, _request):
    e = raises(PolicyNotFoundError, lambda: client.get_policy("no/such.rego"))
    expect(e.expression == "resource_not_found", f"code {e.expression}")


def query_rule_post(client, request):
    body = client.query_rule(request, "promo", "decision")
    expect(body["result"]["allow"] is True, f"decision {body}")
    expect(body.get("decision_id"), "a decision id")
    allow = client.query_rule(request, "promo.decision", "allow")
    expect(allow["result"] is True, f"allow {allow}")


def query_rule_metrics_provenance(client, request):
    params = {"metrics": True, "provenance": True, "pretty": True}
    body = client.query_rule(request, "promo", "decision", query_params=params)
    metrics = body["metrics"]
    for key in ("timer_server_handler_ns", "timer_rego_query_eval_ns",
                "timer_rego_input_parse_ns"):
        expect(isinstance(metrics.get(key), int) and metrics[key] > 0,
               f"{key} in {metrics}")
    bundle = body["provenance"]["bundles"]["promo"]
    expect(len(bundle["digest"]["sha256"]) == 64, f"bundle {bundle}")
    expect(body["provenance"]["version"], "a version")


def get_data_with_input(client, request):
    # GET /v1/data/{path}?input=<JSON>: the same decision as the POST.
    params = {"input": json.dumps(request, separators=(",", ":"))}
    body = client.get_data("promo/decision", query_params=params)
    expect(body["result"]["allow"] is True, f"decision {body}")


def get_data_without_input(client, _request):
    body = client.get_data("promo/config/order")
    expect(body["result"] == ["dev", "staging", "prod"], f"order {body}")
    # The trailing slash of `get_data()` is redirected like OPA's.
    everything = client.get_data()
    expect("promo" in everything["result"], "data at the root")


def undefined_document(client, _request):
    raises(PolicyNotFoundError, lambda: client.get_data("promo/no/such/rule"))


def malformed_input(client, _request):
    e = raises(PolicyNotFoundError,
               lambda: client.get_data("promo/decision", {"input": "{not json"}))
    expect(e.expression == "invalid_parameter", f"code {e.expression}")


def explain_refused(client, request):
    e = raises(requests.HTTPError, lambda: client.query_rule(
        request, "promo", "decision", query_params={"explain": "full"}))
    body = e.response.json()
    expect(e.response.status_code == 400, f"status {e.response.status_code}")
    expect(body["code"] == "invalid_parameter" and "explain" in body["message"],
           f"body {body}")


def writes_refused(client, _request):
    policy = client.get_policies_list()[0]
    e = raises(DeletePolicyError, lambda: client.delete_policy(policy))
    expect(e.expression == "invalid_parameter", f"code {e.expression}")
    e = raises(RegoParseError, lambda: client.update_policy_from_string(
        "package x\nallow := true\n", "x"))
    expect(e.expression == "invalid_parameter", f"code {e.expression}")
    # The policy is still there, unchanged.
    expect(policy in client.get_policies_list(), "policy survives a delete")


def ad_hoc_query(client, _request):
    body = client.ad_hoc_query("x := data.promo.config.order[0]")
    expect(body["result"] == [{"x": "dev"}], f"bindings {body}")
    e = raises(requests.HTTPError, lambda: client.ad_hoc_query("x := ", None))
    expect(e.response.json()["code"] == "invalid_parameter", "a bad query is 400")


def async_client(client, request):
    """The library's aiohttp client: the same connection check and decision."""

    async def run():
        async with AsyncOpaClient(host=client.host, port=client.port,
                                  timeout=10, retries=0) as opa:
            expect(await opa.check_connection() is True, "check_connection")
            ids = await opa.get_policies_list()
            expect(ids, "policy ids")
            body = await opa.query_rule(request, "promo", "decision")
            expect(body["result"]["allow"] is True, f"decision {body}")

    asyncio.run(run())


CHECKS = [
    ("connection", connection),
    ("list_policies", list_policies),
    ("missing_policy", missing_policy),
    ("query_rule_post", query_rule_post),
    ("query_rule_metrics_provenance", query_rule_metrics_provenance),
    ("get_data_with_input", get_data_with_input),
    ("get_data_without_input", get_data_without_input),
    ("undefined_document", undefined_document),
    ("malformed_input", malformed_input),
    ("explain_refused", explain_refused),
    ("writes_refused", writes_refused),
    ("ad_hoc_query", ad_hoc_query),
    ("async_client", async_client),
]

if __name__ == "__main__":
    main()
