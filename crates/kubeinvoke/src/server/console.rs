//! `/console`: the web console's page and assets, built into the binary (no CDN, no fetches).
//! A strict Content-Security-Policy allows only this origin.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

const PAGE: &str = include_str!("../../../../console/index.html");
const STYLE: &str = include_str!("../../../../console/style.css");
const SCRIPT: &str = include_str!(concat!(env!("OUT_DIR"), "/console/console.js"));

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

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT.to_string())
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE.to_string())
}
