"""What the conformance scripts share: the bridge's address, checks that
print `ok <name>`, and assertions on the client's errors."""

import os
import uuid

import httpx
from livepeer_frameworks import ResultError, expect_result

URL = os.environ["FW_URL"]
BASE = URL.rsplit("/graphql", 1)[0]
checks = 0

# Every success member of the unions the scripts call.
SUCCESS = (
    "Stream",
    "StreamKey",
    "DeleteSuccess",
    "DeveloperToken",
    "CreateSigningKeySuccess",
    "SigningKey",
    "CreateEnrollmentTokenResponse",
    "ClusterSubscription",
    "ClusterInvite",
    "Cluster",
    "CreateEdgeClusterResponse",
    "BootstrapEdgeResponse",
    "InfrastructureNode",
)


def check(name):
    def run(fn):
        global checks  # noqa: PLW0603 - a count of passed checks, printed at the end
        fn()
        checks += 1
        print(f"ok {name}", flush=True)
        return fn

    return run


def refused(call, typename, code=None, field=None):
    """The mutation answers a union error member, which expect_result raises."""
    try:
        expect_result(call(), *SUCCESS)
    except ResultError as error:
        assert error.typename == typename, (error.typename, error.message)
        if code is not None:
            assert error.code == code, (error.code, error.message)
        if field is not None:
            assert error.field == field, (error.field, error.message)
        return error
    raise AssertionError(f"expected {typename}")


def raises(call, exception, code=None):
    try:
        call()
    except exception as error:
        if code is not None:
            assert error.code == code, (error.code, str(error))
        return error
    raise AssertionError(f"expected {exception.__name__}")


def post(body, token=None, url=URL, raw=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(url, json=body if raw is None else None, content=raw, headers=headers, timeout=30)


def session(email, password):
    response = httpx.post(f"{BASE}/auth/login", json={"email": email, "password": password}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def register():
    """A new tenant with its owner, signed in: (token, tenant id)."""
    email = f"c-{uuid.uuid4().hex}@example.com"
    response = httpx.post(f"{BASE}/auth/register", json={"email": email, "password": "a long password"}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["token"], response.json()["tenantId"]


def done(script):
    print(f"{script}: {checks} checks passed", flush=True)
