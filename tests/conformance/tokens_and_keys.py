"""Conformance: API tokens and playback signing keys through the published
client, in tenants of their own. Run by tests/graphql_conformance.rs."""

import os
from datetime import datetime, timedelta, timezone

from common import URL, check, done, raises, refused, register
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from livepeer_frameworks import AuthenticationError, FrameWorksClient, expect_result, sign_playback_token
from livepeer_frameworks.graphql import CreateDeveloperTokenInput, CreateSigningKeyInput
import base64
import json

token, _ = register()
other_token, _ = register()
fw = FrameWorksClient(URL, token=token)
other = FrameWorksClient(URL, token=other_token)
reader = FrameWorksClient(URL, token=os.environ["FW_READ_TOKEN"])

created = expect_result(
    fw.create_developer_token(
        CreateDeveloperTokenInput(name="ci", permissions="streams:read, streams:write", expiresIn=30)
    ).create_developer_token,
    "DeveloperToken",
)


@check("createDeveloperToken answers the token with its value, once")
def _():
    assert created.token_value.startswith("fw_") and created.token_name == "ci"
    assert created.permissions == ["streams:read", "streams:write"] and created.status == "active"
    expected = datetime.now(timezone.utc) + timedelta(days=30)
    assert abs((created.expires_at - expected).total_seconds()) < 120, created.expires_at
    assert created.last_used_at is None and created.created_at is not None


@check("the new token authenticates; the list shows it without its value, with its last use")
def _():
    assert FrameWorksClient(URL, token=created.token_value).list_streams().streams_connection.total_count == 0
    listed = fw.list_developer_tokens().developer_tokens_connection
    assert listed.total_count == 1
    (row,) = listed.nodes
    assert row.id == created.id and row.token_value is None and row.last_used_at is not None


@check("bad permissions and lifetimes are ValidationErrors naming the field")
def _():
    refused(
        lambda: fw.create_developer_token(CreateDeveloperTokenInput(name="x", permissions="streams:fly")).create_developer_token,
        "ValidationError",
        field="input.permissions",
    )
    refused(
        lambda: fw.create_developer_token(CreateDeveloperTokenInput(name="x")).create_developer_token,
        "ValidationError",
        field="input.permissions",
    )
    refused(
        lambda: fw.create_developer_token(
            CreateDeveloperTokenInput(name="x", permissions="streams:read", expiresIn=0)
        ).create_developer_token,
        "ValidationError",
        field="input.expiresIn",
    )
    refused(
        lambda: reader.create_developer_token(
            CreateDeveloperTokenInput(name="x", permissions="streams:read")
        ).create_developer_token,
        "AuthError",
        code="FORBIDDEN",
    )
    assert fw.list_developer_tokens().developer_tokens_connection.total_count == 1


@check("revokeDeveloperToken stops the token at once; only its tenant can revoke it")
def _():
    refused(lambda: other.revoke_developer_token(created.id).revoke_developer_token, "NotFoundError")
    gone = expect_result(fw.revoke_developer_token(created.id).revoke_developer_token, "DeleteSuccess")
    assert gone.success and gone.deleted_id == created.id
    raises(lambda: FrameWorksClient(URL, token=created.token_value).list_streams(), AuthenticationError)
    assert fw.list_developer_tokens().developer_tokens_connection.nodes[0].status == "revoked"
    refused(lambda: fw.revoke_developer_token(created.id).revoke_developer_token, "NotFoundError")


key = expect_result(fw.create_signing_key(CreateSigningKeyInput(name="staging")).create_signing_key, "CreateSigningKeySuccess")


def verify(jwt, public_pem):
    """Checks an ES256 JWS against a PEM public key, as a playback edge would."""
    header, payload, signature = jwt.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = serialization.load_pem_public_key(public_pem.encode())
    public.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    return json.loads(base64.urlsafe_b64decode(header + "=="))


@check("createSigningKey answers a working ES256 pair; the private half only once")
def _():
    signing = key.signing_key
    assert signing.name == "staging" and signing.algorithm == "ES256" and signing.status == "ACTIVE"
    assert key.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    private = serialization.load_pem_private_key(key.private_key_pem.encode(), password=None)
    derived = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert derived.decode() == signing.public_key_pem
    jwt = sign_playback_token(key.private_key_pem, signing.kid, expires_in=300, subject="viewer-1")
    assert verify(jwt, signing.public_key_pem)["kid"] == signing.kid
    assert signing.revoked_at is None and signing.last_used_at is None


@check("signingKey by global id or kid; the list filters by status")
def _():
    assert fw.get_signing_key(key.signing_key.id).signing_key.kid == key.signing_key.kid
    assert fw.get_signing_key(key.signing_key.kid).signing_key.id == key.signing_key.id
    assert fw.get_signing_key("nope").signing_key is None
    assert fw.list_signing_keys(status="active").signing_keys_connection.total_count == 1
    assert fw.list_signing_keys(status="revoked").signing_keys_connection.total_count == 0


@check("another tenant neither sees nor revokes the key")
def _():
    assert other.get_signing_key(key.signing_key.id).signing_key is None
    assert other.list_signing_keys().signing_keys_connection.total_count == 0
    refused(lambda: other.revoke_signing_key(key.signing_key.id).revoke_signing_key, "NotFoundError")


@check("revokeSigningKey answers the revoked key; a second revoke is NotFoundError")
def _():
    revoked = expect_result(fw.revoke_signing_key(key.signing_key.id).revoke_signing_key, "SigningKey")
    assert revoked.status == "REVOKED" and revoked.revoked_at is not None
    assert fw.list_signing_keys(status="revoked").signing_keys_connection.total_count == 1
    assert fw.list_signing_keys(status="active").signing_keys_connection.total_count == 0
    refused(lambda: fw.revoke_signing_key(key.signing_key.id).revoke_signing_key, "NotFoundError")


@check("a tenant holds at most ten active keys")
def _():
    for i in range(10):
        expect_result(fw.create_signing_key(CreateSigningKeyInput(name=f"k{i}")).create_signing_key, "CreateSigningKeySuccess")
    refused(lambda: fw.create_signing_key(CreateSigningKeyInput(name="eleventh")).create_signing_key, "ValidationError")
    listed = fw.list_signing_keys().signing_keys_connection
    assert listed.total_count == 11 and len(listed.nodes) == 11


done("tokens_and_keys")
