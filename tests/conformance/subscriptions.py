"""Conformance: subscriptions over graphql-transport-ws with the published
async client. Once subscribed, the script prints `publish <tenant> <stream>`;
tests/graphql_conformance.rs then sends an edge's telemetry for that stream
through Kafka until the script exits."""

import asyncio

from common import URL, check, done, register
from livepeer_frameworks import AsyncFrameWorksClient, AuthenticationError, FrameWorksClient, expect_result
from livepeer_frameworks.graphql import CreateStreamInput, UpdateStreamInput

token, tenant = register()
other_token, _ = register()
stream = expect_result(
    FrameWorksClient(URL, token=token).create_stream(CreateStreamInput(name="live one")).create_stream, "Stream"
)
other_stream = expect_result(
    FrameWorksClient(URL, token=other_token).create_stream(CreateStreamInput(name="elsewhere")).create_stream, "Stream"
)


async def first(subscription, predicate, seconds=30):
    async def take():
        async for message in subscription:
            if predicate(message):
                return message
        raise AssertionError("the subscription ended")

    return await asyncio.wait_for(take(), seconds)


async def collect_until(subscription, enough, seconds=30):
    seen = []

    async def take():
        async for message in subscription:
            seen.append(message)
            if enough(seen):
                return seen
        raise AssertionError("the subscription ended")

    return await asyncio.wait_for(take(), seconds)


async def collect(subscription, seconds):
    seen = []

    async def take():
        async for message in subscription:
            seen.append(message)

    try:
        await asyncio.wait_for(take(), seconds)
    except asyncio.TimeoutError:
        pass
    return seen


async def main():
    fw = AsyncFrameWorksClient(URL, token=token)
    other = AsyncFrameWorksClient(URL, token=other_token)
    started = first(fw.live_stream_events(stream_id=stream.id), lambda m: m.live_stream_events.type_ == "STREAM_START")
    tracks = first(fw.live_track_list_updates(stream_id=stream.stream_id), lambda m: True)
    viewers = first(fw.live_connection_events(), lambda m: m.live_connection_events.event_type == "connect")
    # Another tenant, unfiltered and filtered on this tenant's stream: nothing of it arrives.
    leak_all = collect(other.live_stream_events(), 8)
    leak_one = collect(other.live_connection_events(stream_id=stream.id), 8)
    # Public events: two types of the tenant's, and all of one stream's.
    changes = collect_until(
        fw.tenant_events(types=["stream.created", "stream.updated"]),
        lambda seen: any(m.tenant_events.type_ == "stream.updated" for m in seen),
    )
    connected = first(fw.tenant_events(stream_id=stream.id), lambda m: m.tenant_events.type_ == "stream.connected")
    tasks = [
        asyncio.ensure_future(c) for c in (started, tracks, viewers, leak_all, leak_one, changes, connected)
    ]
    await asyncio.sleep(1.5)
    print(f"publish {tenant} {stream.stream_id}", flush=True)
    created = expect_result((await fw.create_stream(CreateStreamInput(name="announced"))).create_stream, "Stream")
    await fw.update_stream(created.id, UpdateStreamInput(name="renamed"))
    started, tracks, viewers, leak_all, leak_one, changes, connected = await asyncio.gather(*tasks)

    @check("tenantEvents filters by type: stream.created, then stream.updated naming the change")
    def _():
        kinds = [m.tenant_events.type_ for m in changes]
        assert kinds == ["stream.created", "stream.updated"], kinds
        made, renamed = (m.tenant_events for m in changes)
        assert made.data.typename__ == "StreamCreated" and made.data.stream_id == created.stream_id
        assert made.data.name == "announced" and made.data.playback_id == created.playback_id
        assert made.subject == f"streams/{created.stream_id}" and made.time.tzinfo is not None
        assert renamed.data.typename__ == "StreamUpdated" and renamed.data.changed_fields == ["name"]

    @check("tenantEvents for one stream delivers its encoder connecting")
    def _():
        event = connected.tenant_events
        assert event.data.typename__ == "StreamConnected" and event.data.stream_id == stream.stream_id
        assert event.data.protocol == "INGEST_PROTOCOL_RTMP"
        assert event.subject == f"streams/{stream.stream_id}"

    @check("liveStreamEvents delivers the stream's start with the stream itself")
    def _():
        event = started.live_stream_events
        assert event.stream_id == stream.stream_id and event.node_id == "edge-1"
        assert event.protocol == "RTMP" and event.status == "LIVE" and event.source == "LIVE"
        assert event.schema_version == 1 and event.timestamp.tzinfo is not None
        assert event.stream.name == "live one" and event.stream.id == stream.id
        assert event.stream.source_location.mode == "ANY" and event.stream.push_targets == []

    @check("liveTrackListUpdates delivers the track list with its primaries")
    def _():
        update = tracks.live_track_list_updates
        assert update.stream_id == stream.stream_id and update.total_tracks == 2
        assert (update.video_track_count, update.audio_track_count) == (1, 1)
        assert update.quality_tier == "720p" and update.primary_width == 1280 and update.primary_height == 720
        assert update.primary_video_bitrate == 2500 and update.primary_video_codec == "H264"
        assert update.primary_audio_channels == 2 and update.primary_audio_sample_rate == 48000
        assert [t.resolution for t in update.tracks] == ["1280x720", None]

    @check("liveConnectionEvents delivers a viewer's connection")
    def _():
        event = viewers.live_connection_events
        assert event.session_id == "v1" and event.connector == "HLS" and event.node_id == "edge-1"
        assert event.connection_addr == "203.0.113.9" and event.country_code == "NL"
        assert event.stream.stream_id == stream.stream_id

    @check("another tenant's subscriptions receive none of it")
    def _():
        assert leak_all == [] and leak_one == [], (leak_all, leak_one)

    forged = AsyncFrameWorksClient(URL, token="fw_not-a-token", max_reconnects=0)

    async def refused():
        async for _ in forged.live_stream_events(stream_id=other_stream.id):
            raise AssertionError("a forged token subscribed")

    try:
        await asyncio.wait_for(refused(), 20)
        closed = False
    except AuthenticationError:
        closed = True

    @check("a bad credential in connection_init is closed with 4403 (AuthenticationError)")
    def _():
        assert closed


asyncio.run(main())
done("subscriptions")
