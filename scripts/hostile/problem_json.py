"""Schemathesis check for haltwire: every error answer is RFC 9457 problem+json with a stable type.

Loaded through SCHEMATHESIS_HOOKS by scripts/hostile-http.sh.
"""
import json

import schemathesis


@schemathesis.check
def errors_are_problem_json(ctx, response, case):
    if response.status_code < 400:
        return None
    content_type = ",".join(response.headers.get("content-type", []))
    assert content_type.startswith("application/problem+json"), (
        f"{response.status_code} answered with content-type {content_type!r}, not problem+json"
    )
    body = json.loads(response.content)
    assert str(body.get("type", "")).startswith("urn:haltwire:problem:"), f"problem type missing: {body}"
    assert body.get("status") == response.status_code, f"status field {body.get('status')} != {response.status_code}"
    return None
