//! What of a URI may go into an event, a log line or an API answer: never
//! its credentials. Used by the bridge (a pull source shown to its owner)
//! and by the edge (trigger payloads, before they leave the node).

/// Query parameters whose value may be a secret, by a part of their name.
/// `tkn` and `sid` are where Mist reads a viewer's session token from.
const SECRET_PARAMETERS: [&str; 10] = [
    "pass", "secret", "token", "key", "auth", "sig", "streamid", "jwt", "tkn", "sid",
];

/// The URI without user info, and with the values of query parameters that
/// may carry secrets (passphrase, token, key, ...) replaced; `redacted`
/// for anything that is not a URI.
pub fn uri(uri: &str) -> String {
    let Ok(mut url) = url::Url::parse(uri) else {
        return "redacted".into();
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = SECRET_PARAMETERS.iter().any(|s| lower.contains(s));
                (
                    k.into_owned(),
                    if secret {
                        "redacted".into()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// A push target as it may be shown: a file path as it is; a URI as
/// [`uri`] leaves it, and for RTMP, whose servers take the stream key as
/// the last path segment, without that segment.
pub fn push_target(target: &str) -> String {
    if target.starts_with('/') {
        return target.to_owned();
    }
    let redacted = uri(target);
    let Ok(mut url) = url::Url::parse(&redacted) else {
        return redacted;
    };
    if matches!(url.scheme(), "rtmp" | "rtmps") {
        let mut segments: Vec<String> = url
            .path_segments()
            .map(|s| s.map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(last) = segments.iter_mut().rev().find(|s| !s.is_empty()) {
            "redacted".clone_into(last);
            url.set_path(&segments.join("/"));
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_secret_parameters_are_removed() {
        assert_eq!(
            uri("rtsp://admin:hunter2@cam.example.com:554/live?channel=1&token=abc"),
            "rtsp://cam.example.com:554/live?channel=1&token=redacted"
        );
        assert_eq!(
            uri("srt://relay.example.com:9000?passphrase=s3cret&latency=200"),
            "srt://relay.example.com:9000?passphrase=redacted&latency=200"
        );
        assert_eq!(
            uri("https://edge.example.net/hls/pb1/index.m3u8?jwt=eyJ.a.b"),
            "https://edge.example.net/hls/pb1/index.m3u8?jwt=redacted"
        );
        assert_eq!(uri("not a uri"), "redacted");
    }

    #[test]
    fn rtmp_push_targets_lose_their_stream_key() {
        assert_eq!(
            push_target("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl"),
            "rtmp://a.rtmp.youtube.com/live2/redacted"
        );
        assert_eq!(
            push_target("rtmps://user:pw@live.example.com:443/app/key123?x=1"),
            "rtmps://live.example.com:443/app/redacted?x=1"
        );
        assert_eq!(
            push_target("/var/lib/mist/rec/test.ts"),
            "/var/lib/mist/rec/test.ts"
        );
        assert_eq!(
            push_target("srt://relay.example.com:9000?streamid=secret"),
            "srt://relay.example.com:9000?streamid=redacted"
        );
    }
}
