//! Extensions under the same ARM paths (Azure's clients never call them): a cluster's command
//! history, a command's live output, and cancel.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::clusters;
use crate::arm::ApiError;
use crate::arm::wire::{CommandHistoryEntry, ListResult};
use crate::command::{CommandId, CommandState};
use crate::dispatcher::Cancel;
use crate::identity::Caller;
use crate::resource::ClusterRef;
use crate::server::AppState;
use crate::server::request::{RequestContext, encode, json};
use crate::store::ClusterUid;
use crate::time::now_millis;

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
/// How often a followed stream looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `GET …/commandResults?$top=N&$filter=provisioningState eq 'X'`: newest first, paged.
pub(crate) async fn list(app: &AppState, ctx: &RequestContext, cluster_ref: &ClusterRef) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let (top, before) = ctx.page(DEFAULT_PAGE, MAX_PAGE)?;
    let wanted_state = match ctx.query("$filter") {
        None => None,
        Some(filter) => Some(state_filter(filter)?),
    };
    let mut page = app.store.commands().list_commands(&cluster.uid, before, top + 1, now_millis()).await?;
    let next_link = (page.len() > top).then(|| {
        page.truncate(top);
        let last = page.last().expect("a full page").seq;
        let mut link = format!("{}&$top={top}&$skipToken={last}", ctx.url(&ctx.path));
        if let Some(filter) = ctx.query("$filter") {
            link.push_str(&format!("&$filter={}", encode(filter)));
        }
        link
    });
    let value = page
        .iter()
        .filter(|c| wanted_state.is_none_or(|s| c.record.state == s))
        .map(CommandHistoryEntry::from)
        .collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link }))
}

/// `provisioningState eq 'Succeeded'`, the one filter the history understands.
fn state_filter(filter: &str) -> Result<CommandState, ApiError> {
    let refuse =
        || ApiError::invalid("$filter", format!("Unsupported filter '{filter}'; use provisioningState eq '<state>'."));
    let (field, value) = filter.split_once(" eq ").ok_or_else(refuse)?;
    if !field.trim().eq_ignore_ascii_case("provisioningState") {
        return Err(refuse());
    }
    CommandState::parse(value.trim().trim_matches('\'')).ok_or_else(refuse)
}

/// `GET …/commandResults/{id}/logs?offset=N&follow=true`: the full output from `offset`, as
/// chunked text; with `follow`, the stream stays open until the command ends.
pub(crate) async fn logs(
    app: &AppState,
    ctx: &RequestContext,
    cluster_ref: &ClusterRef,
    id: &CommandId,
) -> Result<Response, ApiError> {
    let (cluster, _) = super::commands::load(app, cluster_ref, id).await?;
    let offset = match ctx.query("offset") {
        None => 0,
        Some(raw) => raw
            .parse::<u64>()
            .map_err(|_| ApiError::invalid("offset", "'offset' must be a byte position (0 or more)."))?,
    };
    let follow = ctx.query("follow").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let follower = Follower {
        store: app.store.clone(),
        path: app.dispatcher.output_path(id),
        cluster_uid: cluster.uid,
        id: id.clone(),
        offset,
        follow,
        done: false,
        file: None,
    };
    let body = Body::from_stream(stream::unfold(follower, |mut f| async move {
        let chunk = f.next_chunk().await?;
        Some((Ok::<_, std::io::Error>(chunk), f))
    }));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Reads a command's output file from an offset, waiting for more while the command runs.
struct Follower {
    store: std::sync::Arc<dyn crate::store::Store>,
    path: std::path::PathBuf,
    cluster_uid: ClusterUid,
    id: CommandId,
    offset: u64,
    follow: bool,
    done: bool,
    /// Opened (and positioned at `offset`) once the file exists; reads then continue from there.
    file: Option<tokio::fs::File>,
}

impl Follower {
    async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.done {
                return None;
            }
            let chunk = self.read().await;
            if !chunk.is_empty() {
                self.offset += chunk.len() as u64;
                return Some(chunk);
            }
            if !self.follow || self.finished().await {
                // One last read: output written just before the command ended.
                let mut last = self.read().await;
                if self.file.is_none() {
                    // Run by another replica (or its file is gone): serve the stored result's logs.
                    last = self.stored_logs().await;
                }
                self.done = true;
                return (!last.is_empty()).then_some(last);
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    async fn read(&mut self) -> Vec<u8> {
        if self.file.is_none() {
            let Ok(mut file) = tokio::fs::File::open(&self.path).await else { return Vec::new() };
            if file.seek(std::io::SeekFrom::Start(self.offset)).await.is_err() {
                return Vec::new();
            }
            self.file = Some(file);
        }
        let Some(file) = &mut self.file else { return Vec::new() };
        let mut buffer = vec![0u8; 64 * 1024];
        match file.read(&mut buffer).await {
            Ok(n) => {
                buffer.truncate(n);
                buffer
            }
            Err(_) => Vec::new(),
        }
    }

    /// The finished result's (capped) logs from `offset`; empty while it runs.
    async fn stored_logs(&self) -> Vec<u8> {
        match self.store.commands().get_command(&self.cluster_uid, &self.id, now_millis()).await {
            Ok(Some(command)) if command.state.is_terminal() => {
                let logs = command.logs.unwrap_or_default().into_bytes();
                logs.get(self.offset as usize..).map(<[u8]>::to_vec).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// Finished, expired or deleted: nothing more will be written.
    async fn finished(&self) -> bool {
        match self.store.commands().get_command(&self.cluster_uid, &self.id, now_millis()).await {
            Ok(Some(command)) => command.state.is_terminal(),
            Ok(None) => true,
            Err(_) => false,
        }
    }
}

/// `POST …/commandResults/{id}/cancel`: a queued command is canceled at once, a running one is
/// stopped (its whole process tree); either ends `Canceled` naming who canceled it.
pub(crate) async fn cancel(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    cluster_ref: &ClusterRef,
    id: &CommandId,
) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    match app.dispatcher.cancel_command(&cluster.uid, id, caller.claims.app_id()).await? {
        Cancel::Done => {}
        Cancel::NotFound => return Err(ApiError::CommandNotFound(id.to_string())),
        Cancel::AlreadyFinished(state) => {
            return Err(ApiError::AlreadyFinished { id: id.to_string(), state: state.as_str() });
        }
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(location) = HeaderValue::from_str(&ctx.url(&super::commands::result_path(&cluster, id))) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(app.config.retry_after_secs));
    Ok(response)
}
