//! Global ids: standard base64 (padded) of `"<Type>:<rawId>"`. Arguments
//! accept the global form or the raw id; a global id of another type is an error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub fn global(type_name: &str, raw: &str) -> async_graphql::ID {
    async_graphql::ID(STANDARD.encode(format!("{type_name}:{raw}")))
}

/// The raw id behind `id`, or why it names another type.
pub fn raw(type_name: &str, id: &str) -> Result<String, String> {
    let decoded = STANDARD
        .decode(id.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((kind, raw)) if kind == type_name => Ok(raw.to_owned()),
        Some((kind, _)) if kind.chars().all(|c| c.is_ascii_alphanumeric()) && !kind.is_empty() => {
            Err(format!("is a {kind} id, not a {type_name} id"))
        }
        _ => Ok(id.trim().to_owned()),
    }
}

/// The UUID behind `id` (global or raw) of `type_name`; none when `id`
/// names another type or is no UUID, which callers answer as not found.
pub fn uuid(type_name: &str, id: &str) -> Option<uuid::Uuid> {
    raw(type_name, id).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_and_raw_ids_both_resolve() {
        let id = global("Stream", "0190a8a0-0000-7000-8000-000000000001");
        assert_eq!(
            id.0,
            STANDARD.encode("Stream:0190a8a0-0000-7000-8000-000000000001")
        );
        assert_eq!(
            raw("Stream", &id.0).as_deref(),
            Ok("0190a8a0-0000-7000-8000-000000000001")
        );
        assert_eq!(
            raw("Stream", "0190a8a0-0000-7000-8000-000000000001").as_deref(),
            Ok("0190a8a0-0000-7000-8000-000000000001")
        );
        assert!(raw("Stream", &global("Cluster", "c1").0).is_err());
    }

    #[test]
    fn uuids_come_only_from_ids_of_their_type() {
        let raw_id = "0190a8a0-0000-7000-8000-000000000001";
        let expected = raw_id.parse().ok();
        assert_eq!(uuid("Stream", &global("Stream", raw_id).0), expected);
        assert_eq!(uuid("Stream", raw_id), expected);
        assert_eq!(uuid("Stream", &global("Cluster", raw_id).0), None);
        assert_eq!(uuid("Stream", "not-a-uuid"), None);
    }
}
