"""resolveViewerEndpoint and resolveIngestEndpoint through the published
client, unchanged and without a token, as a player and an encoder call
them. Prints one `result <json>` line for the Rust test, which compares it
with what the balancer's /play and /ingest answer for the same viewer."""

import json
import os

from livepeer_frameworks import FrameWorksClient, GraphQLError
from livepeer_frameworks._generated.graphql.enums import MediaViewerProtocol

URL = os.environ["FW_URL"]
# Where the viewer is, as a CDN would say: the bridge locates by these
# headers when it has no GeoIP database, as the balancer does.
LONDON = {"x-latitude": "51.5", "x-longitude": "-0.12"}

fw = FrameWorksClient(URL, headers=LONDON)


def error_code(call):
    try:
        call()
    except GraphQLError as error:
        return error.code
    raise AssertionError("the call was expected to fail")


def endpoint(e):
    return None if e is None else e.model_dump(by_alias=True)


viewer = fw.resolve_viewer_endpoint(content_id=os.environ["FW_PLAYBACK_ID"]).resolve_viewer_endpoint
llhls = fw.resolve_viewer_endpoint(
    content_id=os.environ["FW_PLAYBACK_ID"], protocol=MediaViewerProtocol.HLS_CMAF
).resolve_viewer_endpoint
with_token = fw.resolve_viewer_endpoint(
    content_id=os.environ["FW_PLAYBACK_ID"], playback_token="abc.def.ghi"
).resolve_viewer_endpoint.primary.url
ingest = fw.resolve_ingest_endpoint(stream_key=os.environ["FW_STREAM_KEY"]).resolve_ingest_endpoint
# A stream of a tenant that may use none of the enrolled edges.
elsewhere = fw.resolve_viewer_endpoint(content_id=os.environ["FW_FOREIGN_PLAYBACK_ID"]).resolve_viewer_endpoint

print(
    "result",
    json.dumps(
        {
            "viewer": {
                "primary": endpoint(viewer.primary),
                "fallbacks": [endpoint(e) for e in viewer.fallbacks],
                "metadata": viewer.metadata.model_dump(by_alias=True, mode="json"),
            },
            "llhls": endpoint(llhls.primary),
            "with_token": with_token,
            "ingest": {
                "primary": endpoint(ingest.primary),
                "fallbacks": [endpoint(e) for e in ingest.fallbacks],
                "metadata": ingest.metadata.model_dump(by_alias=True),
            },
            "foreign": {
                "primary": endpoint(elsewhere.primary),
                "fallbacks": [endpoint(e) for e in elsewhere.fallbacks],
            },
            "errors": {
                "unknown_playback_id": error_code(
                    lambda: fw.resolve_viewer_endpoint(content_id="no-such-id")
                ),
                "unknown_key": error_code(lambda: fw.resolve_ingest_endpoint(stream_key="sk_never_issued")),
                "unsupported_protocol": error_code(
                    lambda: fw.resolve_viewer_endpoint(
                        content_id=os.environ["FW_PLAYBACK_ID"], protocol=MediaViewerProtocol.FLV
                    )
                ),
            },
        },
        default=str,
    ),
    flush=True,
)
