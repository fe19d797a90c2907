//! A bearer token on the operator routes (`/metrics`, `/queue_stats`), compared in constant
//! time; 401 without it.

use crate::secret::Secret;
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

/// Lets a request through only with `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct BearerToken {
    expected: Secret,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken").finish_non_exhaustive()
    }
}

impl BearerToken {
    /// Requires `token`. An empty token would let everyone in, so it refuses everyone.
    pub fn new(token: Secret) -> Self {
        Self { expected: token }
    }

    /// Whether `authorization` (the header's value) carries the token; constant time in the
    /// token's content.
    pub fn matches(&self, authorization: Option<&[u8]>) -> bool {
        let expected = self.expected.expose().as_bytes();
        let Some(given) = authorization.and_then(|v| v.strip_prefix(b"Bearer ".as_slice())) else {
            return false;
        };
        !expected.is_empty() && bool::from(given.ct_eq(expected))
    }
}

impl<B> ValidateRequest<B> for BearerToken {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<Body>> {
        let given = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if self.matches(given) {
            return Ok(());
        }
        let mut refused = Response::new(Body::from("a bearer token is required"));
        *refused.status_mut() = StatusCode::UNAUTHORIZED;
        refused
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        Err(refused)
    }
}

/// `router` with every route requiring `token`, or unchanged when there is none.
pub fn protect<S>(router: axum::Router<S>, token: Option<&Secret>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    match token {
        Some(token) => {
            router.route_layer(ValidateRequestHeaderLayer::custom(BearerToken::new(token.clone())))
        }
        None => router,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let auth = BearerToken::new(Secret::new("0123456789abcdef"));
        assert!(auth.matches(Some(b"Bearer 0123456789abcdef")));
        for wrong in [
            &b"Bearer 0123456789abcdeF"[..],
            b"Bearer 0123456789abcde",
            b"Bearer 0123456789abcdef0",
            b"bearer 0123456789abcdef",
            b"0123456789abcdef",
            b"Basic MDEyMzQ1Njc4OWFiY2RlZg==",
            b"Bearer ",
            b"",
        ] {
            assert!(!auth.matches(Some(wrong)), "{:?}", String::from_utf8_lossy(wrong));
        }
        assert!(!auth.matches(None));
        assert!(!BearerToken::new(Secret::new("")).matches(Some(b"Bearer ")));
    }
}
