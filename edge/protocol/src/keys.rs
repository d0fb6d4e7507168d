//! Stream keys as both sides of the edge protocol handle them.

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of a stream key: the only form an edge keeps and
/// the form refusals and redacted triggers carry.
pub fn key_sha256(key: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(key.as_bytes()))
}

/// The stream key in a push URL: SRT's `streamid` parameter
/// (`srt://host:port?streamid=<key>`, also in the access-control form
/// `#!::r=<key>,m=publish`), else the last path segment
/// (`rtmp://host/live/<key>`, query removed).
pub fn stream_key(url: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let streamid = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "streamid")
        .map(|(_, value)| value.into_owned());
    if let Some(streamid) = streamid.filter(|id| !id.is_empty()) {
        return match streamid.strip_prefix("#!::") {
            Some(pairs) => pairs
                .split(',')
                .find_map(|pair| pair.strip_prefix("r="))
                .unwrap_or_default()
                .to_owned(),
            None => streamid,
        };
    }
    let path = path.split('#').next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_push_urls_last_segment() {
        assert_eq!(stream_key("rtmp://127.0.0.1:1935/live/abc123"), "abc123");
        assert_eq!(stream_key("srt://127.0.0.1:8889/?streamid=sk_1"), "sk_1");
        assert_eq!(stream_key("srt://h:9000/live/k?streamid=x"), "x");
        assert_eq!(
            stream_key("srt://h:9000?streamid=%23%21%3A%3Ar%3Dsk_2%2Cm%3Dpublish"),
            "sk_2"
        );
        assert_eq!(stream_key(""), "");
    }

    #[test]
    fn keys_travel_as_lower_case_hex_sha256() {
        assert_eq!(
            key_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
