//! Parsed documents, kept by their text: a client sends the same few
//! operation documents over and over, and parsing one (a PEG parser over the
//! whole text, fragments included) was an eighth of the bridge's CPU time.
//! Only parsing is skipped; every request is still validated against its
//! own variables.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};

/// Documents kept at most, and the longest text kept: together they bound
/// what a client sending ever-new documents can make the cache hold.
const MAX_DOCUMENTS: usize = 256;
const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Default)]
pub struct ParsedDocuments {
    documents: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
}

impl ParsedDocuments {
    fn lookup(&self, query: &str) -> Option<ExecutableDocument> {
        self.lock().get(query).cloned()
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

impl ExtensionFactory for ParsedDocuments {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ParsedDocuments {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self.lookup(query) {
            return Ok(document);
        }
        let document = next.run(ctx, query, variables).await?;
        self.keep(query, &document);
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded() {
        let cache = ParsedDocuments::default();
        for n in 0..MAX_DOCUMENTS + 10 {
            let query = format!("{{ a{n} }}");
            let document = async_graphql::parser::parse_query(&query).unwrap();
            cache.keep(&query, &document);
        }
        assert_eq!(cache.lock().len(), MAX_DOCUMENTS);
        let long = format!("{{ {} }}", "a ".repeat(MAX_DOCUMENT_BYTES));
        let document = async_graphql::parser::parse_query(&long).unwrap();
        cache.keep(&long, &document);
        assert!(cache.lookup(&long).is_none());
    }
}
