//! `POST /yookassa/notification`: a YooKassa notification names a payment; the payment is then
//! read from YooKassa itself before anything is credited (see
//! [`crate::payments::yookassa_rail`]). The sender's address is the connection's peer.

use crate::payments::yookassa_rail::{NotificationAnswer, YooKassaRail};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Extension;
use std::net::SocketAddr;
use std::sync::Arc;

/// Path of the YooKassa notification route.
pub const YOOKASSA_NOTIFICATION_PATH: &str = "/yookassa/notification";

pub(super) async fn receive(
    State(rail): State<Arc<YooKassaRail>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> StatusCode {
    let Some(Extension(ConnectInfo(peer))) = peer else {
        return StatusCode::FORBIDDEN;
    };
    match rail.on_notification(peer.ip(), &body).await {
        NotificationAnswer::Handled => StatusCode::OK,
        NotificationAnswer::Forbidden => StatusCode::FORBIDDEN,
        NotificationAnswer::Malformed => StatusCode::BAD_REQUEST,
        NotificationAnswer::RetryLater => StatusCode::SERVICE_UNAVAILABLE,
    }
}
