//! The one Microsoft Graph call the az CLI makes around role assignments: resolving principal
//! object ids to names (`directoryObjects/getByIds`), for this server's own service principals.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::arm::ApiError;
use crate::server::AppState;
use crate::server::request::{RequestContext, json, json_body};

/// The Graph resource (and token audience) this server announces in `/metadata/endpoints`.
pub(crate) fn graph_resource(base_url: &str) -> String {
    format!("{base_url}/graph/")
}

#[derive(Deserialize)]
struct GetByIds {
    ids: Vec<String>,
}

#[derive(Serialize)]
struct DirectoryObject {
    #[serde(rename = "@odata.type")]
    odata_type: &'static str,
    id: String,
    #[serde(rename = "appId")]
    app_id: String,
    #[serde(rename = "displayName")]
    display_name: String,
    #[serde(rename = "servicePrincipalNames")]
    service_principal_names: Vec<String>,
}

#[derive(Serialize)]
struct Objects {
    value: Vec<DirectoryObject>,
}

pub(crate) async fn get_by_ids(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let ctx = RequestContext::new(&app, &mut parts);
    let resource = graph_resource(&ctx.base_url);
    let audiences = [resource.as_str(), resource.trim_end_matches('/')];
    let token =
        ctx.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return ApiError::AuthenticationMissing {
            authorization_uri: format!("{}/{}", ctx.base_url, app.instance.tenant_id),
        }
        .into_response();
    };
    if let Err(e) = app.identity.validate(token, &audiences).await {
        return ApiError::InvalidToken(e.to_string()).into_response();
    }
    let wanted: GetByIds = match json_body(body, &ctx.headers, 1024 * 1024).await {
        Ok(wanted) => wanted,
        Err(e) => return e.into_response(),
    };
    let principals = match app.store.identity().list_principals().await {
        Ok(principals) => principals,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let value = principals
        .into_iter()
        .filter(|p| wanted.ids.iter().any(|id| id.eq_ignore_ascii_case(&p.object_id)))
        .map(|p| DirectoryObject {
            odata_type: "#microsoft.graph.servicePrincipal",
            id: p.object_id,
            service_principal_names: vec![p.app_id.clone()],
            app_id: p.app_id,
            display_name: p.display_name,
        })
        .collect();
    json(StatusCode::OK, &Objects { value })
}
