//! What of a trigger's payload may leave the edge. Mist puts secrets in
//! some: the stream key (PUSH_REWRITE's URL and stream name), push targets
//! with their credentials or stream keys (PUSH_OUT_START, PUSH_END,
//! RECORDING_END, and the push's log lines), viewer tokens in request URLs
//! (USER_NEW, PLAY_REWRITE). The journal and the ingress get the payload
//! with those replaced: stream keys by their SHA-256 (`sha256:<hex>`, the
//! form the platform looks keys up by), URIs as `frameworks_events::redact`
//! leaves them. Answers are decided on the payload as Mist sent it.

use frameworks_events::redact;

use super::TriggerKind;
use crate::keys::key_sha256;

/// Replaces every occurrence of `secret` in `field` by `shown`.
fn replace_in(field: &mut String, secret: &str, shown: &str) {
    if !secret.is_empty() && secret != shown && field.contains(secret) {
        *field = field.replace(secret, shown);
    }
}

/// Scrubs the push target at `index`, and the same target wherever else it
/// appears in `fields` (Mist's log lines repeat it).
fn scrub_target(fields: &mut [String], index: usize) {
    let Some(target) = fields.get(index).cloned() else {
        return;
    };
    let shown = redact::push_target(&target);
    for field in fields.iter_mut() {
        replace_in(field, &target, &shown);
    }
}

/// A viewer's session token leaves as its SHA-256 (USER_NEW and USER_END
/// scrubbed alike still pair up); a number Mist made up is no secret.
fn scrub_session_token(fields: &mut [String], index: usize) {
    if let Some(token) = fields.get_mut(index)
        && !token.bytes().all(|b| b.is_ascii_digit())
    {
        *token = format!("sha256:{}", key_sha256(token));
    }
}

fn scrub_url(fields: &mut [String], index: usize) {
    if let Some(url) = fields.get_mut(index) {
        *url = redact::uri(url);
    }
}

/// Scrubs `fields`, the payload of a `kind` trigger, in place.
pub fn scrub(kind: TriggerKind, fields: &mut [String]) {
    match kind {
        TriggerKind::PushRewrite => {
            // [push URL, encoder host, stream name as Mist read it (the key)]
            let key = fields.get(2).cloned().unwrap_or_default();
            let key = if key.is_empty() {
                fields
                    .first()
                    .map(|url| crate::keys::stream_key(url))
                    .unwrap_or_default()
            } else {
                key
            };
            let hashed = format!("sha256:{}", key_sha256(&key));
            for field in fields.iter_mut() {
                replace_in(field, &key, &hashed);
            }
            if let Some(url) = fields.first_mut() {
                // Credentials in the URL itself, beside the key.
                if url.contains('@') || url.contains('?') {
                    *url = redact::uri(url);
                }
            }
        }
        // [stream, target]
        TriggerKind::PushOutStart => scrub_target(fields, 1),
        // [push id, stream, target, target used, logs, status]
        TriggerKind::PushEnd => {
            scrub_target(fields, 3);
            scrub_target(fields, 2);
        }
        // [stream, target, connector, ...]
        TriggerKind::RecordingEnd | TriggerKind::RecordingSegment => scrub_target(fields, 1),
        // [stream, host, session token, connector, request URL, session, ...]
        TriggerKind::UserNew => {
            scrub_session_token(fields, 2);
            scrub_url(fields, 4);
        }
        // [session token, stream, connector, host, ...]
        TriggerKind::UserEnd => scrub_session_token(fields, 0),
        // [playback id, host, connector, request URL]
        TriggerKind::PlayRewrite => scrub_url(fields, 3),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> Vec<String> {
        body.split('\n').map(str::to_owned).collect()
    }

    #[test]
    fn the_stream_key_leaves_as_its_hash() {
        let mut push = fields("rtmp://127.0.0.1:1935/live/sk_secret\n198.51.100.7\nsk_secret");
        scrub(TriggerKind::PushRewrite, &mut push);
        let hashed = format!("sha256:{}", key_sha256("sk_secret"));
        assert_eq!(
            push,
            [
                format!("rtmp://127.0.0.1:1935/live/{hashed}"),
                "198.51.100.7".to_owned(),
                hashed
            ]
        );
        let mut srt = fields("srt://h:8889?streamid=sk_secret\n198.51.100.7\n");
        scrub(TriggerKind::PushRewrite, &mut srt);
        assert!(srt.iter().all(|f| !f.contains("sk_secret")), "{srt:?}");
    }

    #[test]
    fn push_targets_and_viewer_tokens_are_redacted_everywhere() {
        let target = "rtmp://a.rtmp.youtube.com/live2/yt-key-1234";
        let mut end = fields(&format!(
            "17952\nlive+s1\n{target}\n{target}\n[[1,\"INFO\",\"Pushing to {target}\"]]\n{{}}"
        ));
        scrub(TriggerKind::PushEnd, &mut end);
        assert!(end.iter().all(|f| !f.contains("yt-key-1234")), "{end:?}");
        assert_eq!(end[2], "rtmp://a.rtmp.youtube.com/live2/redacted");
        let mut out = fields(&format!("live+s1\n{target}"));
        scrub(TriggerKind::PushOutStart, &mut out);
        assert_eq!(out[1], "rtmp://a.rtmp.youtube.com/live2/redacted");
        let mut recording = fields("live+s1\n/var/lib/rec/live+s1/1.ts\n0\n6000\n6000");
        let kept = recording.clone();
        scrub(TriggerKind::RecordingSegment, &mut recording);
        assert_eq!(recording, kept, "file paths are not secrets");
        let mut viewer = fields(
            "live+s1\n203.0.113.7\n42\nHLS\nhttps://e/hls/pb/index.m3u8?jwt=eyJ.x.y\nsess\nfalse",
        );
        scrub(TriggerKind::UserNew, &mut viewer);
        assert_eq!(viewer[4], "https://e/hls/pb/index.m3u8?jwt=redacted");
        assert_eq!(viewer[2], "42", "a number Mist made up stays");
    }

    #[test]
    fn a_viewer_token_leaves_as_its_hash_in_user_new_and_user_end_alike() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2In0.c2ln";
        let mut new = fields(&format!(
            "live+s1\n203.0.113.7\n{token}\nHLS\nhttps://e/hls/pb/index.m3u8?tkn={token}\nsess"
        ));
        scrub(TriggerKind::UserNew, &mut new);
        let mut end = fields(&format!("{token}\nlive+s1\nHLS\n203.0.113.7\n2\n10\n20\n"));
        scrub(TriggerKind::UserEnd, &mut end);
        assert!(
            new.iter().chain(&end).all(|f| !f.contains(token)),
            "{new:?} {end:?}"
        );
        assert_eq!(new[2], format!("sha256:{}", key_sha256(token)));
        assert_eq!(new[2], end[0], "the session still pairs up");
    }
}
