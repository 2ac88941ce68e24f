//! `/console`: the web console's page and assets, built into the binary (no CDN, no fetches).
//! A strict Content-Security-Policy allows only this origin.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

const PAGE: &str = include_str!("../../../../console/index.html");
const STYLE: &str = include_str!("../../../../console/style.css");
/// The console's ES modules as `tsc` wrote them, by the name the page imports them under
/// (`wire.ts` holds only types: nothing imports it at run time).
const MODULES: [(&str, &str); 5] = [
    ("console.js", include_str!(concat!(env!("OUT_DIR"), "/console/console.js"))),
    ("api.js", include_str!(concat!(env!("OUT_DIR"), "/console/api.js"))),
    ("ansi.js", include_str!(concat!(env!("OUT_DIR"), "/console/ansi.js"))),
    ("approvals.js", include_str!(concat!(env!("OUT_DIR"), "/console/approvals.js"))),
    ("zip.js", include_str!(concat!(env!("OUT_DIR"), "/console/zip.js"))),
];

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                      form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The page, with this server's tenant filled in for the sign-in form.
pub(super) async fn page(State(app): State<Arc<AppState>>) -> Response {
    asset("text/html; charset=utf-8", PAGE.replace("{{TENANT}}", &app.instance.tenant_id))
}

/// One of the console's modules; any other name is not found.
pub(super) async fn script(Path(module): Path<String>) -> Response {
    match MODULES.iter().find(|(name, _)| *name == module) {
        Some((_, source)) => asset("text/javascript; charset=utf-8", source.to_string()),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE.to_string())
}
