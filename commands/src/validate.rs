//! Input rules shared by the aggregates. Each check names the field path.

use std::net::IpAddr;

use url::{Host, Url};

use crate::error::CommandError;

/// A trimmed, non-empty name of at most `max` characters without control characters.
pub fn name(field: &str, value: &str, max: usize) -> Result<String, CommandError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(CommandError::invalid(field, "must not be empty"));
    }
    text(field, trimmed, max)
}

/// Free text of at most `max` characters without control characters (newlines allowed).
pub fn text(field: &str, value: &str, max: usize) -> Result<String, CommandError> {
    let length = value.chars().count();
    if length > max {
        return Err(CommandError::invalid(
            field,
            format!("must be at most {max} characters (got {length})"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(CommandError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// A lowercase slug: `[a-z0-9-]`, 1 to `max` characters.
pub fn slug(field: &str, value: &str, max: usize) -> Result<String, CommandError> {
    if value.is_empty() || value.len() > max {
        return Err(CommandError::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(CommandError::invalid(
            field,
            "may contain only a-z, 0-9 and '-'",
        ));
    }
    Ok(value.to_owned())
}

/// A plausible e-mail address, lowercased for uniqueness.
pub fn email(field: &str, value: &str) -> Result<String, CommandError> {
    let value = value.trim().to_lowercase();
    let valid = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !value.chars().any(char::is_whitespace);
    if valid {
        Ok(value)
    } else {
        Err(CommandError::invalid(field, "is not an e-mail address"))
    }
}

/// Schemes an edge can pull a live source from.
pub const PULL_SCHEMES: [&str; 7] = ["rtmp", "rtmps", "srt", "rtsp", "http", "https", "dtsc"];

/// A pull source URI an edge may fetch: a supported scheme and a host; no
/// loopback, private, link-local or otherwise internal address unless
/// `allow_private` (a deployment pulling from its own network).
///
/// Names are not resolved here: the edge checks the address it connects to.
pub fn pull_source(field: &str, value: &str, allow_private: bool) -> Result<Url, CommandError> {
    public_url(field, value, &PULL_SCHEMES, allow_private)
}

/// A URI with one of `schemes` and a host that is not loopback, private,
/// link-local or otherwise internal (unless `allow_private`).
pub fn public_url(
    field: &str,
    value: &str,
    schemes: &[&str],
    allow_private: bool,
) -> Result<Url, CommandError> {
    let url = Url::parse(value.trim())
        .map_err(|e| CommandError::invalid(field, format!("is not a URI: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(CommandError::invalid(
            field,
            format!(
                "scheme {:?} is not supported (use one of {})",
                url.scheme(),
                schemes.join(", ")
            ),
        ));
    }
    let host = url
        .host()
        .ok_or_else(|| CommandError::invalid(field, "has no host"))?;
    if !allow_private {
        let internal = match host {
            // Schemes the URL standard does not know (rtmp, srt, rtsp) leave IP
            // literals as domain names, so parse them here.
            Host::Domain(domain) => {
                let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                match domain.parse::<IpAddr>() {
                    Ok(ip) => is_internal(ip),
                    // A top-level label starting with a digit is a number, not a DNS
                    // name: resolvers read forms like "2130706433" or "0x7f.1" as IPv4.
                    Err(_)
                        if domain
                            .rsplit('.')
                            .next()
                            .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_digit())) =>
                    {
                        return Err(CommandError::invalid(
                            field,
                            "has a numeric host that is not a dotted-quad IPv4 address",
                        ));
                    }
                    Err(_) => {
                        domain == "localhost"
                            || domain.ends_with(".localhost")
                            || domain.ends_with(".internal")
                    }
                }
            }
            Host::Ipv4(ip) => is_internal(IpAddr::V4(ip)),
            Host::Ipv6(ip) => is_internal(IpAddr::V6(ip)),
        };
        if internal {
            return Err(CommandError::invalid(
                field,
                "points at a private or loopback address",
            ));
        }
    }
    Ok(url)
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]) // carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("input.name", "  Launch  ", 10).unwrap(), "Launch");
        for bad in ["", "   ", "x\u{0}y", &"x".repeat(11)] {
            let err = name("input.name", bad, 10).unwrap_err();
            assert!(
                matches!(&err, CommandError::Validation { field, .. } if field == "input.name"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pull_sources_need_a_supported_scheme_and_a_public_host() {
        for good in [
            "rtmp://origin.example.com/live/x",
            "srt://8.8.8.8:9000",
            "https://cdn.example.org/x.m3u8",
        ] {
            assert!(
                pull_source("input.pullSource", good, false).is_ok(),
                "{good}"
            );
        }
        let refused = [
            ("ftp://example.com/x", "scheme"),
            ("rtmp:///nohost", "host"),
            ("not a uri", "URI"),
            ("rtmp://127.0.0.1/live", "private"),
            ("rtmp://10.1.2.3/live", "private"),
            ("srt://192.168.1.9:9000", "private"),
            ("rtsp://[::1]/cam", "private"),
            ("rtsp://[fd00::1]/cam", "private"),
            ("http://localhost:8080/x", "private"),
            ("http://169.254.169.254/latest/meta-data", "private"),
            ("rtmp://[::ffff:10.0.0.1]/x", "private"),
            ("rtmp://2130706433/live", "numeric"),
            ("srt://0x7f.1:9000", "numeric"),
        ];
        for (uri, why) in refused {
            let err = pull_source("input.pullSource", uri, false).unwrap_err();
            assert!(err.to_string().contains(why), "{uri}: {err}");
            assert!(err.to_string().starts_with("input.pullSource"), "{err}");
        }
        assert!(pull_source("input.pullSource", "rtmp://10.1.2.3/live", true).is_ok());
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            email("input.email", " Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
        ] {
            assert!(email("input.email", bad).is_err(), "{bad}");
        }
    }
}
