//! The credentials an endpoint accepts (a bearer token, basic auth) and
//! why a request's were refused; the HTTP server and the web-config
//! file's basic-auth check both answer with [`AuthError`].

/// Credentials an endpoint accepts: a bearer token, basic auth, or both.
#[derive(Clone, Default)]
pub struct Credentials {
    pub bearer: Option<String>,
    pub basic: Option<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.is_some())
            .field("basic", &self.basic.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials")]
    Missing,
    #[error("wrong credentials")]
    Wrong,
    /// Every bcrypt check is busy and the queue is full (basic auth only).
    #[error("too many basic-auth checks at once; retry")]
    Busy,
}

impl Credentials {
    /// Checks an `Authorization` header. Every comparison is constant-time
    /// (subtle), so the time taken tells nothing about how much of a token
    /// was right.
    pub fn check(
        &self,
        authorization: Option<&hyper::header::HeaderValue>,
    ) -> Result<(), AuthError> {
        use base64::Engine;
        use subtle::ConstantTimeEq;
        let header = authorization
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing)?;
        let eq = |a: &[u8], b: &[u8]| bool::from(a.ct_eq(b));
        if let (Some(given), Some(token)) = (header.strip_prefix("Bearer "), &self.bearer) {
            if eq(given.trim().as_bytes(), token.as_bytes()) {
                return Ok(());
            }
        }
        if let (Some(given), Some((user, password))) = (header.strip_prefix("Basic "), &self.basic)
        {
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            if eq(given.trim().as_bytes(), expected.as_bytes()) {
                return Ok(());
            }
        }
        Err(AuthError::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn credentials_take_the_right_bearer_or_basic_and_nothing_else() {
        let c = Credentials {
            bearer: Some("token-0123456789".into()),
            basic: Some(("am".into(), "pw".into())),
        };
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(c.check(Some(&h("Bearer token-0123456789"))), Ok(()));
        assert_eq!(c.check(Some(&h("Basic YW06cHc="))), Ok(()));
        assert_eq!(
            c.check(Some(&h("Bearer token-012345678"))),
            Err(AuthError::Wrong)
        );
        assert_eq!(c.check(Some(&h("Basic YW06cHg="))), Err(AuthError::Wrong));
        assert_eq!(c.check(None), Err(AuthError::Missing));
        assert_eq!(
            Credentials::default().check(Some(&h("Bearer x"))),
            Err(AuthError::Wrong)
        );
        assert!(!format!("{c:?}").contains("token-0123456789"));
    }
}
