//! The tools' backend for `manimd mcp`: a manimd server over its HTTP API,
//! through the typed client, with the one API key given at start; and the
//! stdio transport that serves them.

use std::time::Duration;

use rmcp::model::Extensions;
use rmcp::ServiceExt;

use super::{Backend, Tools};
use crate::api::{
    Capabilities, ErrorDetail, GenerationRequest, JobView, PreviewRequest, PreviewView,
    RenderRequest,
};
use crate::client::{Client, ClientError};

/// A server reached over HTTP; every call is that key's.
pub struct Remote {
    client: Client,
}

impl Remote {
    pub fn new(client: Client) -> Remote {
        Remote { client }
    }
}

/// Serves the tools on stdin and stdout until the client closes them.
pub async fn serve_stdio(client: Client) -> anyhow::Result<()> {
    let running = Tools::new(Remote::new(client))
        .serve(rmcp::transport::stdio())
        .await?;
    running.waiting().await?;
    Ok(())
}

impl Backend for Remote {
    async fn capabilities(&self, _: &Extensions) -> Result<Capabilities, ErrorDetail> {
        Ok(self.client.capabilities().await?)
    }

    async fn submit(&self, _: &Extensions, req: RenderRequest) -> Result<JobView, ErrorDetail> {
        Ok(self.client.submit(&req).await?)
    }

    async fn generate(
        &self,
        _: &Extensions,
        req: GenerationRequest,
    ) -> Result<JobView, ErrorDetail> {
        Ok(self.client.generate(&req).await?)
    }

    async fn job(&self, _: &Extensions, id: &str) -> Result<JobView, ErrorDetail> {
        Ok(self.client.job(id).await?)
    }

    /// Follows the job's event stream, which ends with its final state: one
    /// request while it runs, rather than polls that spend the key's rate.
    async fn wait(
        &self,
        _: &Extensions,
        id: &str,
        timeout: Duration,
    ) -> Result<JobView, ErrorDetail> {
        let follow = async {
            let mut events = self.client.events(id).await?;
            while let Some(event) = events.next().await {
                event?;
            }
            Ok::<(), ClientError>(())
        };
        // A broken stream or the time running out: the job as it is now.
        let _ = tokio::time::timeout(timeout, follow).await;
        Ok(self.client.job(id).await?)
    }

    async fn preview(
        &self,
        _: &Extensions,
        req: PreviewRequest,
    ) -> Result<PreviewView, ErrorDetail> {
        Ok(self.client.preview(&req).await?)
    }

    async fn frame(
        &self,
        _: &Extensions,
        preview: &PreviewView,
        n: usize,
    ) -> Result<Vec<u8>, ErrorDetail> {
        let frame = preview.frames.get(n).ok_or_else(|| ErrorDetail {
            code: "not-found".into(),
            message: format!("the preview has no frame {n}"),
            field: None,
            line: None,
            column: None,
            details: Default::default(),
        })?;
        Ok(self.client.bytes(&frame.url).await?)
    }

    fn base_url(&self, _: &Extensions) -> Option<String> {
        Some(self.client.base().to_owned())
    }
}

/// The server's error as it sent it; a server that cannot be reached, or an
/// answer the API does not give, is `server-unreachable` with what happened.
impl From<ClientError> for ErrorDetail {
    fn from(e: ClientError) -> ErrorDetail {
        match e {
            ClientError::Api { error, .. } => error,
            other => ErrorDetail {
                code: "server-unreachable".into(),
                message: other.to_string(),
                field: None,
                line: None,
                column: None,
                details: Default::default(),
            },
        }
    }
}
