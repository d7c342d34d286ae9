//! The admin API (HTTP, JSON, over axum): status, backup, crash, restore,
//! partition, heal. Every refusal is a JSON `{"error": …}` with 400, 404 or
//! 409, and changes nothing; the lab checks names before it acts.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::lab::{Admin, AdminFail, Call, LabHandle};
use super::ldap::Ports;
use crate::config::RestoreStrategy;

/// The largest request body the API reads (a partition's groups).
const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) lab: LabHandle,
    pub(crate) ports: Arc<Ports>,
    pub(crate) names: Arc<Vec<String>>,
}

/// A refusal: its status and the message of its `{"error": …}` body.
struct ApiError(u16, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.0).unwrap_or(StatusCode::BAD_REQUEST);
        (code, axum::Json(json!({"error": self.1}))).into_response()
    }
}

fn error(status: u16, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

type Params = Result<Query<BTreeMap<String, String>>, QueryRejection>;
type Name = Result<Path<String>, PathRejection>;

/// The router, with JSON answers for unknown paths and methods too.
pub(crate) fn router(api: Api) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/servers/{name}/backup", post(backup))
        .route("/servers/{name}/crash", post(crash))
        .route("/servers/{name}/restore", post(restore))
        .route("/partition", post(partition))
        .route("/heal", post(heal))
        .fallback(|| async { error(404, "no such endpoint") })
        .method_not_allowed_fallback(|| async { error(405, "method not allowed here") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

impl Api {
    async fn ask(&self, admin: Admin) -> Result<Value, ApiError> {
        self.lab
            .call(|reply| Call::Admin { admin, reply })
            .await
            .ok_or_else(|| error(503, "the lab is stopping"))?
            .map_err(|AdminFail { status, error: e }| error(status, e))
    }

    fn server(&self, name: Name) -> Result<(usize, String), ApiError> {
        let Path(name) = name.map_err(|e| error(400, e.body_text()))?;
        match self.names.iter().position(|n| *n == name) {
            Some(i) => Ok((i, name)),
            None => Err(error(404, format!("unknown server `{name}`"))),
        }
    }
}

fn params(p: Params) -> Result<BTreeMap<String, String>, ApiError> {
    p.map(|Query(q)| q).map_err(|e| error(400, e.body_text()))
}

fn answer(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn status(State(api): State<Api>) -> Response {
    answer(api.ask(Admin::Status).await)
}

async fn backup(State(api): State<Api>, name: Name, q: Params) -> Response {
    answer(
        async {
            let (_, server) = api.server(name)?;
            let q = params(q)?;
            let name = q
                .get("name")
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| error(400, "`name` (the backup's name) is required"))?;
            api.ask(Admin::Backup {
                server,
                name: name.clone(),
            })
            .await
        }
        .await,
    )
}

async fn crash(State(api): State<Api>, name: Name) -> Response {
    answer(
        async {
            let (i, server) = api.server(name)?;
            let v = api.ask(Admin::Crash { server }).await?;
            api.ports.close(i).await;
            Ok(v)
        }
        .await,
    )
}

async fn restore(State(api): State<Api>, name: Name, q: Params) -> Response {
    answer(
        async {
            let (i, server) = api.server(name)?;
            let q = params(q)?;
            let backup = q
                .get("backup")
                .ok_or_else(|| error(400, "`backup` (the backup's name) is required"))?
                .clone();
            let strategy = match q.get("strategy") {
                None => None,
                Some(s) => Some(
                    s.parse::<RestoreStrategy>()
                        .map_err(|e| error(400, e.to_string()))?,
                ),
            };
            let subtree = q.get("subtree").map(|s| super::entry::normalize_dn(s));
            let v = api
                .ask(Admin::Restore {
                    server,
                    backup,
                    strategy,
                    subtree,
                })
                .await?;
            // The server restarted: its old connections end, and the
            // answer waits until its port takes new ones.
            api.ports.close(i).await;
            api.ports.open(i).await.map_err(|e| {
                let addr = api.ports.addr(i);
                error(
                    500,
                    format!("restored, but {addr} cannot listen again: {e}"),
                )
            })?;
            Ok(v)
        }
        .await,
    )
}

async fn partition(State(api): State<Api>, body: Bytes) -> Response {
    answer(
        async {
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| error(400, format!("the body is not JSON: {e}")))?;
            let groups: Vec<Vec<String>> = v
                .get("groups")
                .cloned()
                .map(serde_json::from_value)
                .ok_or_else(|| error(400, "the body needs `groups`: a list of lists of names"))?
                .map_err(|e| error(400, format!("`groups`: {e}")))?;
            api.ask(Admin::Partition { groups }).await
        }
        .await,
    )
}

async fn heal(State(api): State<Api>) -> Response {
    answer(api.ask(Admin::Heal).await)
}
