//! The stream of each viewer session this edge admitted, by Mist's session
//! id, to complete the USER_END that names none.
//!
//! Mist's USER_END names the streams a session was counted on for at least
//! a second. A session Mist ends at once after USER_NEW admitted it (it
//! does, now and then, under a burst of new sessions) names no stream, and
//! a viewer session that started would then never end in the platform's
//! accounting. USER_NEW carries Mist's session id (its sixth field), and so
//! does USER_END (its twelfth): the edge remembers the stream of each
//! session it admitted and fills it in.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use metrics::counter;

/// USER_NEW: stream, host, session token, protocol, request URL, session id.
const USER_NEW_STREAM: usize = 0;
const USER_NEW_SESSION: usize = 5;
/// USER_END: session token, streams, connectors, hosts, seconds, bytes up,
/// bytes down, tags, host times, connector times, stream times, session id.
const USER_END_STREAMS: usize = 1;
const USER_END_SESSION: usize = 11;

/// Sessions remembered at most. Mist ends every session it starts, but a
/// killed Mist does not: past this many, the oldest half is forgotten.
const MAX_SESSIONS: usize = 250_000;

/// Admitted sessions' streams, by Mist's session id.
#[derive(Debug, Default)]
pub struct SessionStreams {
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    /// Session id -> (stream, admission number).
    streams: HashMap<String, (String, u64)>,
    admitted: u64,
}

impl SessionStreams {
    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers the stream of the session a USER_NEW with `fields` admitted.
    pub fn admitted(&self, fields: &[String]) {
        let (Some(stream), Some(session)) =
            (fields.get(USER_NEW_STREAM), fields.get(USER_NEW_SESSION))
        else {
            return;
        };
        if stream.is_empty() || session.is_empty() {
            return;
        }
        let mut remembered = self.lock();
        if remembered.streams.len() >= MAX_SESSIONS && !remembered.streams.contains_key(session) {
            let cutoff = remembered
                .admitted
                .saturating_sub((MAX_SESSIONS / 2) as u64);
            remembered.streams.retain(|_, (_, n)| *n > cutoff);
            counter!("frameworks_edge_session_streams_overflows_total").increment(1);
        }
        remembered.admitted += 1;
        let number = remembered.admitted;
        remembered
            .streams
            .insert(session.clone(), (stream.clone(), number));
    }

    /// Forgets the session a USER_END with `fields` ends, and gives it the
    /// stream its USER_NEW admitted it to when it names none; whether it
    /// was completed so.
    pub fn ended(&self, fields: &mut [String]) -> bool {
        let Some(session) = fields.get(USER_END_SESSION) else {
            return false;
        };
        let Some((stream, _)) = self.lock().streams.remove(session) else {
            return false;
        };
        match fields.get_mut(USER_END_STREAMS) {
            Some(streams) if streams.is_empty() => {
                *streams = stream;
                counter!("frameworks_edge_session_streams_completed_total").increment(1);
                true
            }
            _ => false,
        }
    }

    /// Sessions remembered now.
    pub fn len(&self) -> usize {
        self.lock().streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<String> {
        text.split('\n').map(str::to_owned).collect()
    }

    fn user_new(stream: &str, session: &str) -> Vec<String> {
        fields(&format!(
            "{stream}\n127.0.0.1\n9000000001\nHLS\nhttp://edge/hls/x/index.m3u8\n{session}"
        ))
    }

    fn user_end(streams: &str, session: &str) -> Vec<String> {
        fields(&format!(
            "9000000001\n{streams}\nHLS\n127.0.0.1\n0\n0\n0\n\n0\n0\n0\n{session}"
        ))
    }

    #[test]
    fn a_user_end_naming_no_stream_gets_the_stream_its_session_was_admitted_to() {
        let sessions = SessionStreams::default();
        sessions.admitted(&user_new("live+s1", "abc"));
        let mut end = user_end("", "abc");
        sessions.ended(&mut end);
        assert_eq!(end[USER_END_STREAMS], "live+s1");
        assert!(sessions.is_empty(), "an ended session is forgotten");
    }

    #[test]
    fn a_user_end_naming_its_streams_is_kept_as_mist_sent_it() {
        let sessions = SessionStreams::default();
        sessions.admitted(&user_new("live+s1", "abc"));
        let mut end = user_end("live+s1,live+s2", "abc");
        let sent = end.clone();
        sessions.ended(&mut end);
        assert_eq!(end, sent);
        assert!(sessions.is_empty());
    }

    #[test]
    fn unknown_sessions_change_nothing() {
        let sessions = SessionStreams::default();
        let mut end = user_end("", "abc");
        sessions.ended(&mut end);
        assert_eq!(end[USER_END_STREAMS], "", "no stream is made up");
        // A short USER_END (no session id) is left alone.
        let mut short = fields("9000000001\n\nHLS");
        sessions.ended(&mut short);
        assert_eq!(short.len(), 3);
    }

    #[test]
    fn past_the_bound_the_oldest_half_is_forgotten() {
        let sessions = SessionStreams::default();
        for n in 0..MAX_SESSIONS + 1 {
            sessions.admitted(&user_new("live+s1", &n.to_string()));
        }
        assert_eq!(sessions.len(), MAX_SESSIONS / 2 + 1);
        let mut newest = user_end("", &MAX_SESSIONS.to_string());
        assert!(sessions.ended(&mut newest));
        let mut oldest = user_end("", "0");
        assert!(!sessions.ended(&mut oldest));
    }
}
