//! The schema as both transports (POST /graphql and /graphql/ws) run it:
//! each document parsed once per text (`ParsedDocuments`), and every
//! error in every response given a code ([`errors::code`]).

use std::sync::Arc;

use async_graphql::{Data, Executor, Request, Response, ServerError};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::documents::ParsedDocuments;
use super::{BridgeSchema, errors};

#[derive(Clone)]
pub struct BridgeExecutor {
    schema: BridgeSchema,
    documents: ParsedDocuments,
}

impl std::fmt::Debug for BridgeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeExecutor").finish_non_exhaustive()
    }
}

impl BridgeExecutor {
    pub fn new(schema: BridgeSchema) -> Self {
        Self {
            schema,
            documents: ParsedDocuments::default(),
        }
    }

    /// The request with its document parsed, or why it does not parse.
    fn parsed(&self, mut request: Request) -> Result<Request, ServerError> {
        request.set_parsed_query(self.documents.parse(&request.query)?);
        Ok(request)
    }
}

impl Executor for BridgeExecutor {
    async fn execute(&self, request: Request) -> Response {
        let mut response = match self.parsed(request) {
            Ok(request) => self.schema.execute(request).await,
            Err(unparsed) => Response::from_errors(vec![unparsed]),
        };
        errors::code(&mut response);
        response
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let responses = match self.parsed(request) {
            Ok(request) => self
                .schema
                .execute_stream_with_session_data(request, session_data.unwrap_or_default()),
            Err(unparsed) => {
                futures::stream::once(async { Response::from_errors(vec![unparsed]) }).boxed()
            }
        };
        responses
            .map(|mut response| {
                errors::code(&mut response);
                response
            })
            .boxed()
    }
}
