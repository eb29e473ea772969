"""Schemathesis hooks for e2e's TestOpenAPIFuzz (loaded through
SCHEMATHESIS_HOOKS=openapi_hooks with this folder on PYTHONPATH).

One custom check, rejected_request_changed_nothing: a write the Admin API
rejects (any 4xx) must leave the configuration as it was. Before each
write the hook takes a digest of the state: the declarative export (GET
/config) and the last committed outbox transaction (GET /status), which
moves on every committed write, even one that changes no entity. The
check takes it again after a rejected write and fails when it differs.
The run uses one worker, so no other request runs in between.
"""

import hashlib
import json
import os
import urllib.request

import schemathesis

ADMIN = os.environ["ADMIN_URL"].rstrip("/")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_before = {}


def _get(path):
    with urllib.request.urlopen(ADMIN + path, timeout=30) as r:
        return r.read()


def digest():
    config = json.loads(_get("/config"))["config"]
    status = json.loads(_get("/status"))
    last_tx = (status.get("outbox") or {}).get("last_tx")
    h = hashlib.sha256(config.encode())
    h.update(str(last_tx).encode())
    return h.hexdigest(), last_tx


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.method.upper() in WRITES:
        _before[id(case)] = digest()


@schemathesis.check
def rejected_request_changed_nothing(ctx, response, case):
    before = _before.pop(id(case), None)
    if before is None or not 400 <= response.status_code < 500:
        return None
    after = digest()
    if after != before:
        raise AssertionError(
            f"{case.method} {case.path} was rejected with {response.status_code} "
            f"but changed the state (outbox last_tx {before[1]} -> {after[1]}, "
            f"export digest {before[0][:12]} -> {after[0][:12]})"
        )
    return None
