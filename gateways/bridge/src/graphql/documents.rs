//! Parsed documents, kept by their text: a client sends the same few
//! operation documents over and over, and parsing one (a PEG parser over the
//! whole text, fragments included) was an eighth of the bridge's CPU time.
//! Only parsing is skipped; every request is still validated against its
//! own variables.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::ServerError;
use async_graphql::parser::types::ExecutableDocument;

use super::errors::PARSE_FAILED;

/// Documents kept at most, and the longest text kept: together they bound
/// what a client sending ever-new documents can make the cache hold.
const MAX_DOCUMENTS: usize = 256;
const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Default)]
pub struct ParsedDocuments {
    documents: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
}

impl ParsedDocuments {
    /// `query` parsed, from the cache when it was parsed before; a document
    /// that does not parse is answered with GRAPHQL_PARSE_FAILED.
    pub fn parse(&self, query: &str) -> Result<ExecutableDocument, ServerError> {
        if let Some(document) = self.lock().get(query) {
            return Ok(document.clone());
        }
        let document = async_graphql::parser::parse_query(query).map_err(|error| {
            let mut error = ServerError::from(error);
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", PARSE_FAILED);
            error
        })?;
        self.keep(query, &document);
        Ok(document)
    }

    fn keep(&self, query: &str, document: &ExecutableDocument) {
        if query.len() > MAX_DOCUMENT_BYTES {
            return;
        }
        let mut documents = self.lock();
        if documents.len() >= MAX_DOCUMENTS {
            // Any one makes room: a working set larger than the cache
            // parses as it did without one.
            if let Some(evicted) = documents.keys().next().cloned() {
                documents.remove(&evicted);
            }
        }
        documents.insert(query.to_owned(), document.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecutableDocument>> {
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded() {
        let cache = ParsedDocuments::default();
        for n in 0..MAX_DOCUMENTS + 10 {
            cache.parse(&format!("{{ a{n} }}")).unwrap();
        }
        assert_eq!(cache.lock().len(), MAX_DOCUMENTS);
        let long = format!("{{ {} }}", "a ".repeat(MAX_DOCUMENT_BYTES));
        cache.parse(&long).unwrap();
        assert!(!cache.lock().contains_key(&long));
    }

    #[test]
    fn a_document_that_does_not_parse_is_coded_and_not_kept() {
        let cache = ParsedDocuments::default();
        let error = cache.parse("{ streams { id ").unwrap_err();
        assert_eq!(
            error.extensions.and_then(|e| e.get("code").cloned()),
            Some(async_graphql::Value::from(PARSE_FAILED))
        );
        assert!(cache.lock().is_empty());
    }
}
