"""Conformance: the published `livepeer-frameworks` client (0.4.x), unchanged,
against a running bridge. Streams, stream keys, serverInfo, auth, scopes,
tenant isolation, limits and error codes. Run by tests/graphql_conformance.rs.

Environment:
  FW_URL            the bridge's GraphQL endpoint (http://127.0.0.1:<port>/graphql)
  FW_LIMITED_URL    a second bridge with a rate limit of 5 requests a minute
  FW_EMAIL_A, FW_PASSWORD_A   a user of tenant A (to sign in with /auth/login)
  FW_READ_TOKEN     an API token of tenant A with streams:read only
"""

import base64
import os
import uuid

import httpx
from common import BASE, URL, check, done, post, raises, refused, session
from livepeer_frameworks import (
    AuthenticationError,
    FrameWorksClient,
    GraphQLError,
    RateLimitError,
    RetryPolicy,
    expect_result,
    paginate_relay,
)
from livepeer_frameworks.graphql import (
    ConnectionInput,
    CreateStreamInput,
    CreateStreamKeyInput,
    IngestMode,
    PullSourceInput,
    UpdateStreamInput,
    ValidationStatus,
)

# --- auth over REST ---------------------------------------------------------

token_a = session(os.environ["FW_EMAIL_A"], os.environ["FW_PASSWORD_A"])


@check("login refuses a wrong password with 401 UNAUTHORIZED")
def _():
    response = httpx.post(
        f"{BASE}/auth/login",
        json={"email": os.environ["FW_EMAIL_A"], "password": "not the password"},
        timeout=30,
    )
    assert response.status_code == 401 and response.json()["code"] == "UNAUTHORIZED", response.text


email_b = f"b-{uuid.uuid4().hex}@example.com"
registered = httpx.post(
    f"{BASE}/auth/register", json={"email": email_b, "password": "another long password"}, timeout=30
)
assert registered.status_code == 201, registered.text
token_b = registered.json()["token"]


@check("register refuses a taken e-mail (409) and bad input (400 naming the field), creating nothing")
def _():
    again = httpx.post(f"{BASE}/auth/register", json={"email": email_b, "password": "whatever long"}, timeout=30)
    assert again.status_code == 409 and again.json()["code"] == "CONFLICT", again.text
    bad = httpx.post(f"{BASE}/auth/register", json={"email": "nope", "password": "whatever long"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "input.email", bad.text
    assert bad.json()["code"] == "VALIDATION_FAILED", bad.text
    # A refused tenant name leaves nothing behind: the e-mail is still free.
    email_c = f"c-{uuid.uuid4().hex}@example.com"
    unnamed = httpx.post(
        f"{BASE}/auth/register", json={"email": email_c, "password": "whatever long", "tenantName": " "}, timeout=30
    )
    assert unnamed.status_code == 400 and unnamed.json()["field"] == "input.tenantName", unnamed.text
    named = httpx.post(f"{BASE}/auth/register", json={"email": email_c, "password": "whatever long"}, timeout=30)
    assert named.status_code == 201, named.text


fw = FrameWorksClient(URL, token=token_a)
fw_b = FrameWorksClient(URL, token=token_b)
partial = []
fw_read = FrameWorksClient(URL, token=os.environ["FW_READ_TOKEN"], on_partial_errors=partial.append)
anonymous = FrameWorksClient(URL)


# --- serverInfo and authentication ------------------------------------------


@check("serverInfo answers anonymous callers with a version the client accepts")
def _():
    info = anonymous.server_info().server_info
    assert info.version == "v0.3.11", info.version
    assert info.features == sorted(info.features) and "streams" in info.features


@check("anonymous and badly authenticated calls are AuthenticationError (401 UNAUTHORIZED)")
def _():
    raises(lambda: anonymous.list_streams(), AuthenticationError)
    raises(lambda: FrameWorksClient(URL, token="fw_not-a-token").list_streams(), AuthenticationError)
    forged = token_a[:-4] + ("AAAA" if not token_a.endswith("AAAA") else "BBBB")
    raises(lambda: FrameWorksClient(URL, token=forged).list_streams(), AuthenticationError)
    response = post({"query": "{ streamsConnection { totalCount } }"})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHORIZED"


# --- streams -----------------------------------------------------------------

created = expect_result(
    fw.create_stream(CreateStreamInput(name="conformance push", description="from the client", record=True)).create_stream,
    "Stream",
)


@check("createStream (PUSH) answers the stream with its key")
def _():
    s = created
    assert s.name == "conformance push" and s.description == "from the client" and s.record is True
    assert s.ingest_mode == IngestMode.PUSH and s.pull_source is None
    assert s.stream_key.startswith("sk_") and len(s.playback_id) >= 16
    assert base64.b64decode(s.id).decode() == f"Stream:{s.stream_id}"
    assert s.playback_policy is None and s.monitoring == "INHERIT" and s.dvr_chapter_mode is None
    assert s.created_at.tzinfo is not None and s.updated_at >= s.created_at


@check("createStream (PULL) stores the source sealed and shows it redacted, without a key")
def _():
    pulled = expect_result(
        fw.create_stream(
            CreateStreamInput(
                name="conformance pull",
                ingestMode=IngestMode.PULL,
                pullSource=PullSourceInput(sourceUri="rtsp://admin:hunter2@cam.example.com:554/live?token=abc&ch=1"),
            )
        ).create_stream,
        "Stream",
    )
    assert pulled.ingest_mode == IngestMode.PULL
    assert pulled.pull_source.source_uri_redacted == "rtsp://cam.example.com:554/live?token=redacted&ch=1"
    assert pulled.pull_source.enabled is True and pulled.pull_source.class_ == "public"
    assert pulled.stream_key is None
    got = fw.get_stream(pulled.id).stream
    assert got.pull_source.source_uri_redacted == pulled.pull_source.source_uri_redacted


@check("createStream repeated with one idempotency_key creates one stream and answers it again")
def _():
    key = f"create-{uuid.uuid4().hex}"
    name = f"keyed {uuid.uuid4().hex[:8]}"
    first = expect_result(fw.create_stream(CreateStreamInput(name=name), idempotency_key=key).create_stream, "Stream")
    again = expect_result(fw.create_stream(CreateStreamInput(name=name), idempotency_key=key).create_stream, "Stream")
    assert (again.id, again.stream_key) == (first.id, first.stream_key)
    assert fw.list_streams(search=name).streams_connection.total_count == 1
    refused(
        lambda: fw.create_stream(CreateStreamInput(name="another"), idempotency_key=key).create_stream,
        "ValidationError",
        code="IDEMPOTENCY_KEY_REUSED",
    )
    deleted = expect_result(fw.delete_stream(first.id, idempotency_key=f"delete-{key}").delete_stream, "DeleteSuccess")
    assert deleted.pending is False
    again = expect_result(fw.delete_stream(first.id, idempotency_key=f"delete-{key}").delete_stream, "DeleteSuccess")
    assert again.deleted_id == first.id


@check("bad input is a ValidationError naming the field, and nothing is created")
def _():
    before = fw.list_streams().streams_connection.total_count
    refused(lambda: fw.create_stream(CreateStreamInput(name="   ")).create_stream, "ValidationError", field="input.name")
    refused(
        lambda: fw.create_stream(CreateStreamInput(name="no source", ingestMode=IngestMode.PULL)).create_stream,
        "ValidationError",
        field="input.pullSource",
    )
    refused(
        lambda: fw.create_stream(
            CreateStreamInput(
                name="loopback", ingestMode=IngestMode.PULL, pullSource=PullSourceInput(sourceUri="rtsp://127.0.0.1/x")
            )
        ).create_stream,
        "ValidationError",
        field="input.pullSource",
    )
    refused(
        lambda: fw.create_stream(CreateStreamInput(name="abr", liveVideoAbr="OFF")).create_stream,
        "ValidationError",
        field="input.liveVideoAbr",
    )
    assert fw.list_streams().streams_connection.total_count == before


@check("stream(id) takes the global or the raw id; an unknown one is null")
def _():
    assert fw.get_stream(created.id).stream.name == "conformance push"
    assert fw.get_stream(created.stream_id).stream.id == created.id
    assert fw.get_stream(str(uuid.uuid4())).stream is None
    assert fw.get_stream_key(created.id).stream.stream_key == created.stream_key


names = [f"paged {i}" for i in range(5)]
for name in names:
    expect_result(fw.create_stream(CreateStreamInput(name=name)).create_stream, "Stream")


@check("streamsConnection pages newest first with nodes, edges, pageInfo and totalCount")
def _():
    first = fw.list_streams(page=ConnectionInput(first=2)).streams_connection
    assert first.total_count == 7 and len(first.nodes) == 2
    assert [n.name for n in first.nodes] == ["paged 4", "paged 3"]
    assert first.page_info.has_next_page and not first.page_info.has_previous_page
    walked = list(paginate_relay(lambda page: fw.list_streams(page=ConnectionInput(**page)).streams_connection, page_size=2))
    assert [s.name for s in walked][:5] == list(reversed(names))
    assert len(walked) == 7 and len({s.id for s in walked}) == 7
    found = fw.list_streams(search="PAGED 3").streams_connection
    assert [n.name for n in found.nodes] == ["paged 3"] and found.total_count == 1
    raises(lambda: fw.list_streams(page=ConnectionInput(first=501)), GraphQLError, code="VALIDATION_FAILED")


@check("updateStream changes what it names; the ingest mode is fixed")
def _():
    updated = expect_result(
        fw.update_stream(created.id, UpdateStreamInput(name="renamed", description="new words")).update_stream, "Stream"
    )
    assert updated.name == "renamed" and updated.description == "new words" and updated.record is True
    assert updated.updated_at > created.updated_at
    refused(
        lambda: fw.update_stream(created.id, UpdateStreamInput(ingestMode=IngestMode.PULL)).update_stream,
        "ValidationError",
        field="input.ingestMode",
    )
    refused(
        lambda: fw.update_stream(str(uuid.uuid4()), UpdateStreamInput(name="x")).update_stream,
        "NotFoundError",
        code="NOT_FOUND",
    )


@check("refreshStreamKey replaces the primary key")
def _():
    refreshed = expect_result(fw.refresh_stream_key(created.id).refresh_stream_key, "Stream")
    assert refreshed.stream_key.startswith("sk_") and refreshed.stream_key != created.stream_key
    assert fw.get_stream_key(created.id).stream.stream_key == refreshed.stream_key
    old = fw.get_validate_stream_key(created.stream_key).validate_stream_key
    assert old.status == ValidationStatus.INVALID


@check("stream keys: create, list, validate, delete")
def _():
    key = expect_result(fw.create_stream_key(created.id, CreateStreamKeyInput(name="backup")).create_stream_key, "StreamKey")
    assert key.key_value.startswith("sk_") and key.key_name == "backup" and key.is_active
    assert key.stream_id == created.stream_id
    listed = fw.list_stream_keys(created.id).stream_keys_connection
    assert listed.total_count == 2 and key.key_value in [k.key_value for k in listed.nodes]
    valid = fw.get_validate_stream_key(key.key_value).validate_stream_key
    assert valid.status == ValidationStatus.VALID and valid.stream_key == key.key_value and valid.error is None
    gone = expect_result(fw.delete_stream_key(created.id, key.id).delete_stream_key, "DeleteSuccess")
    assert gone.success and gone.deleted_id == key.id
    assert fw.get_validate_stream_key(key.key_value).validate_stream_key.status == ValidationStatus.INVALID
    assert fw.list_stream_keys(created.id).stream_keys_connection.total_count == 1
    refused(lambda: fw.delete_stream_key(created.id, key.id).delete_stream_key, "NotFoundError")


# --- scopes and tenants --------------------------------------------------------


@check("a streams:read token reads streams; keys and writes are FORBIDDEN")
def _():
    assert fw_read.list_streams().streams_connection.total_count == 7
    got = fw_read.get_stream_key(created.id).stream
    assert got.id == created.id and got.stream_key is None
    codes = [e.get("extensions", {}).get("code") for p in partial for e in p.errors]
    assert codes == ["FORBIDDEN"], partial
    assert partial[0].errors[0]["path"] == ["stream", "streamKey"]
    refused(lambda: fw_read.create_stream(CreateStreamInput(name="nope")).create_stream, "AuthError", code="FORBIDDEN")
    raises(lambda: fw_read.list_stream_keys(created.id), GraphQLError, code="FORBIDDEN")


@check("another tenant sees and changes none of it")
def _():
    assert fw_b.list_streams().streams_connection.total_count == 0
    assert fw_b.get_stream(created.id).stream is None
    refused(lambda: fw_b.update_stream(created.id, UpdateStreamInput(name="mine")).update_stream, "NotFoundError")
    refused(lambda: fw_b.refresh_stream_key(created.id).refresh_stream_key, "NotFoundError")
    refused(lambda: fw_b.delete_stream(created.id).delete_stream, "NotFoundError")
    refused(lambda: fw_b.create_stream_key(created.id, CreateStreamKeyInput(name="x")).create_stream_key, "NotFoundError")
    key = fw.get_stream_key(created.id).stream.stream_key
    assert fw_b.get_validate_stream_key(key).validate_stream_key.status == ValidationStatus.INVALID
    raises(lambda: fw_b.list_stream_keys(created.id), GraphQLError, code="NOT_FOUND")
    assert fw.get_stream(created.id).stream.name == "renamed"


@check("deleteStream removes the stream; a second delete is NotFoundError")
def _():
    gone = expect_result(fw.delete_stream(created.id).delete_stream, "DeleteSuccess")
    assert gone.success and gone.deleted_id == created.id and gone.pending is False
    assert fw.get_stream(created.id).stream is None
    refused(lambda: fw.delete_stream(created.id).delete_stream, "NotFoundError")
    assert fw.list_streams().streams_connection.total_count == 6


# --- documents and limits ------------------------------------------------------


@check("the standard introspection query passes the limits and gives the whole schema")
def _():
    from graphql import build_client_schema, get_introspection_query

    # What GraphiQL's docs explorer and code generators send, every option on.
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    response = post({"query": query}, token=token_a).json()
    assert "errors" not in response, response.get("errors")
    schema = build_client_schema(response["data"])
    assert schema.query_type.name == "Query"
    assert "streamsConnection" in schema.query_type.fields
    assert schema.subscription_type is not None


@check("parse, validation, depth and complexity failures carry their codes")
def _():
    def code(body):
        response = post(body, token=token_a)
        return response.json()["errors"][0]["extensions"]["code"]

    assert code({"query": "{ streamsConnection { totalCount "}) == "GRAPHQL_PARSE_FAILED"
    assert code({"query": "{ streamsConnection { noSuchField } }"}) == "GRAPHQL_VALIDATION_FAILED"
    deep = "{ __schema { types { fields { type { " + "ofType { " * 11 + "name" + " }" * 11 + " } } } } }"
    assert code({"query": deep}) == "QUERY_TOO_DEEP"
    wide = "{ " + " ".join(f"s{i}: streamsConnection {{ totalCount }}" for i in range(1100)) + " }"
    assert code({"query": wide}) == "QUERY_TOO_COMPLEX"
    assert code({"query": "query($p: ConnectionInput) { streamsConnection(page: $p) { totalCount } }", "variables": {"p": {"first": "many"}}}) in (
        "GRAPHQL_VALIDATION_FAILED",
        "VALIDATION_FAILED",
    )
    big = post(None, token=token_a, raw=b'{"query": "' + b"x" * 2_000_000 + b'"}')
    assert big.status_code == 413, big.status_code


@check("setPlaybackPolicy sets and clears a JWT policy, refuses webhook policies (not applied yet) and bad input")
def _():
    from livepeer_frameworks._generated.graphql import (
        PlaybackJwtClaimRequirementInput,
        PlaybackJwtPolicyInput,
        PlaybackPolicyInput,
        PlaybackPolicyType,
        PlaybackWebhookPolicyInput,
        SetPlaybackPolicyInput,
    )

    def set_policy(**kwargs):
        return fw.set_playback_policy(SetPlaybackPolicyInput(**kwargs)).set_playback_policy

    guarded = expect_result(fw.create_stream(CreateStreamInput(name="guarded")).create_stream, "Stream")

    jwt = PlaybackPolicyInput(
        type=PlaybackPolicyType.JWT,
        jwt=PlaybackJwtPolicyInput(
            requiredAudience=["player"],
            requiredClaimsJson=[PlaybackJwtClaimRequirementInput(name="tier", jsonValue='"gold"')],
        ),
        allowedOrigins=["https://watch.example.com"],
    )
    policy = expect_result(set_policy(streamId=guarded.id, policy=jwt), "Stream").playback_policy
    assert policy.type_ == PlaybackPolicyType.JWT
    assert policy.jwt.required_audience == ["player"] and policy.jwt.required_claims_json[0].json_value == '"gold"'
    assert policy.allowed_origins == ["https://watch.example.com"]

    webhook = PlaybackPolicyInput(
        type=PlaybackPolicyType.WEBHOOK,
        webhook=PlaybackWebhookPolicyInput(url="https://hooks.example.com/playback", secret="0123456789abcdef"),
    )
    # Edges cannot ask a webhook yet: refused, and the JWT policy stays.
    refused(lambda: set_policy(streamId=guarded.id, policy=webhook), "ValidationError", field="input.policy.type")
    assert fw.get_stream(guarded.id).stream.playback_policy.type_ == PlaybackPolicyType.JWT

    refused(
        lambda: set_policy(streamId=guarded.id, policy=PlaybackPolicyInput(type=PlaybackPolicyType.JWT)),
        "ValidationError",
        field="input.policy.jwt",
    )
    refused(lambda: set_policy(vodAssetId="nope", policy=jwt), "NotFoundError")
    refused(lambda: set_policy(streamId=guarded.id, clipId="nope", policy=jwt), "ValidationError", field="input")
    cleared = expect_result(
        set_policy(streamId=guarded.id, policy=PlaybackPolicyInput(type=PlaybackPolicyType.PUBLIC)), "Stream"
    )
    assert cleared.playback_policy is None


@check("a caller over its rate limit gets 429 RATE_LIMITED with Retry-After")
def _():
    limited = FrameWorksClient(
        os.environ["FW_LIMITED_URL"], token=token_a, check_server=False, retry=RetryPolicy(max_attempts=1)
    )
    for _ in range(5):
        limited.list_streams()
    error = raises(lambda: limited.list_streams(), RateLimitError)
    assert error.retry_after_seconds and error.retry_after_seconds > 0
    response = post({"query": "{ streamsConnection { totalCount } }"}, token=token_a, url=os.environ["FW_LIMITED_URL"])
    assert response.status_code == 429 and response.headers["retry-after"]
    assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


done("streams")
