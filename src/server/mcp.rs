//! `/mcp`: the MCP tools (`crate::mcp`) over Streamable HTTP, behind the
//! same API keys as the rest of the API.
//!
//! The tools call the service in this process, as the caller the key
//! middleware found, rather than looping back over HTTP to ourselves: no
//! second trip through the router, the rate limit and the body limits for
//! one call, no key to hold or forward, and the owner check is the same
//! `Service` call every handler makes. The tools themselves are the ones
//! `manimd mcp` serves over stdio; only this backend differs.
//!
//! The transport runs stateless (no MCP session kept between requests):
//! each POST carries its own key and is answered alone, so any API node
//! behind a load balancer can take it, as with the rest of the API.

use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use rmcp::model::Extensions;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::auth::Caller;
use super::AppState;
use crate::api::{
    Capabilities, ErrorDetail, GenerationRequest, JobView, PreviewRequest, PreviewView,
    RenderRequest,
};
use crate::jobs::JobId;
use crate::mcp::{detail_of, Backend, Tools};
use crate::service::ServiceError;

/// The service in this process, for the caller of each request.
pub struct Local {
    svc: AppState,
    /// With keys, a request that reached the tools without a caller is
    /// refused rather than served as nobody in particular (who sees all).
    keyed: bool,
}

/// The tower service mounted at `/mcp`.
pub fn service(
    svc: AppState,
    keyed: bool,
) -> StreamableHttpService<Tools<Local>, NeverSessionManager> {
    let max_body = usize::try_from(svc.cfg.max_body_bytes).unwrap_or(usize::MAX);
    let tools = Tools::new(Local { svc, keyed });
    let mut config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        .with_legacy_session_mode(false)
        .with_max_request_body_bytes(max_body);
    // The SDK checks `Host` against loopback names by default (against DNS
    // rebinding of a server on a developer's machine). Here `/mcp` is
    // exactly as reachable as the rest of the API: behind its keys, on
    // loopback only without them unless `--allow-remote` says otherwise;
    // a server behind its own host name must answer there too.
    config = config.disable_allowed_hosts();
    StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}

impl Local {
    /// The owner this call acts for: the key the middleware checked.
    fn owner(&self, call: &Extensions) -> Result<Option<String>, ErrorDetail> {
        let caller = call
            .get::<Parts>()
            .and_then(|p| p.extensions.get::<Caller>());
        match caller.and_then(|c| c.owner()) {
            Some(owner) => Ok(Some(owner.to_owned())),
            None if self.keyed => Err(ErrorDetail {
                code: "unauthorized".into(),
                message: "send an API key as `Authorization: Bearer <key>`".into(),
                field: None,
                line: None,
                column: None,
                details: Default::default(),
            }),
            None => Ok(None),
        }
    }
}

fn id(raw: &str) -> Result<JobId, ErrorDetail> {
    JobId::parse(raw).ok_or_else(|| {
        error(ServiceError::Invalid {
            field: "id".into(),
            message: "a job id is 32 hex digits".into(),
        })
    })
}

/// The service's error as a client sees it, with the wait it asks for.
fn error(e: ServiceError) -> ErrorDetail {
    let mut detail = detail_of(&e.to_error());
    if let Some(secs) = e.retry_after() {
        detail
            .details
            .insert("retry_after_secs".into(), secs.into());
    }
    detail
}

impl Backend for Local {
    async fn capabilities(&self, _: &Extensions) -> Result<Capabilities, ErrorDetail> {
        Ok(self.svc.capabilities())
    }

    async fn submit(&self, call: &Extensions, req: RenderRequest) -> Result<JobView, ErrorDetail> {
        let owner = self.owner(call)?;
        let job = self
            .svc
            .submit(req, owner.as_deref())
            .await
            .map_err(error)?;
        Ok(JobView::from(&job))
    }

    async fn generate(
        &self,
        call: &Extensions,
        req: GenerationRequest,
    ) -> Result<JobView, ErrorDetail> {
        let owner = self.owner(call)?;
        let job = self
            .svc
            .generate(req, owner.as_deref())
            .await
            .map_err(error)?;
        Ok(JobView::from(&job))
    }

    async fn job(&self, call: &Extensions, raw: &str) -> Result<JobView, ErrorDetail> {
        let owner = self.owner(call)?;
        let job = self
            .svc
            .get(&id(raw)?, owner.as_deref())
            .await
            .map_err(error)?;
        Ok(JobView::from(&job))
    }

    async fn wait(
        &self,
        call: &Extensions,
        raw: &str,
        timeout: Duration,
    ) -> Result<JobView, ErrorDetail> {
        let owner = self.owner(call)?;
        let id = id(raw)?;
        let waited = tokio::time::timeout(timeout, self.svc.wait(&id, owner.as_deref())).await;
        let job = match waited {
            Ok(job) => job,
            Err(_) => self.svc.get(&id, owner.as_deref()).await,
        };
        Ok(JobView::from(&job.map_err(error)?))
    }

    async fn preview(
        &self,
        call: &Extensions,
        req: PreviewRequest,
    ) -> Result<PreviewView, ErrorDetail> {
        let owner = self.owner(call)?;
        let (id, preview) = self
            .svc
            .preview(req, owner.as_deref())
            .await
            .map_err(error)?;
        Ok(PreviewView::new(&id, &preview))
    }

    async fn frame(
        &self,
        call: &Extensions,
        preview: &PreviewView,
        n: usize,
    ) -> Result<Vec<u8>, ErrorDetail> {
        let owner = self.owner(call)?;
        self.svc
            .preview_frame(&id(&preview.id)?, n, owner.as_deref())
            .await
            .map_err(error)
    }

    /// The address the caller used (`Host`), behind a proxy the scheme it
    /// says it was reached with (`X-Forwarded-Proto`).
    fn base_url(&self, call: &Extensions) -> Option<String> {
        let headers = &call.get::<Parts>()?.headers;
        let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|s| matches!(*s, "http" | "https"))
            .unwrap_or("http");
        Some(format!("{scheme}://{host}"))
    }
}
