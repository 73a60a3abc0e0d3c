//! The receiver's own credentials (`[web]`), with a bearer token that may
//! live in a file (`web.bearer_token_file`). The file is re-read when it
//! changes, as Alertmanager re-reads its `credentials_file` on every
//! request: rotating the token (a new `.env`, `docker compose up -d`)
//! would otherwise get every webhook a 401 until someone restarted the
//! receiver by hand.
//!
//! Each check stats the file (one syscall; webhooks come a few a minute)
//! and reads it only when its inode, size or mtime changed. A file that
//! is missing, unreadable, empty or holds a token shorter than the 16
//! characters required at start keeps the token read last, and that is
//! logged once when it starts and once when it ends.

use llmchat_common::lock;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use hyper::header::HeaderValue;
use llmchat_common::http::{AuthError, Credentials};

use crate::config::{WebConfig, MIN_TOKEN_LEN};

/// What identifies one version of the token file.
type Stamp = (u64, u64, Option<SystemTime>);

pub struct Auth {
    basic: Option<(String, String)>,
    file: Option<PathBuf>,
    bearer: Mutex<Bearer>,
}

struct Bearer {
    token: Option<String>,
    stamp: Option<Stamp>,
    /// The file could not be read at the last look (said once).
    failing: bool,
}

impl Auth {
    /// From the resolved `[web]` (whose `bearer_token` holds the file's
    /// token as read at start).
    pub fn new(web: &WebConfig) -> Auth {
        let file = web.bearer_token_file.clone();
        let stamp = file.as_ref().and_then(|p| stamp_of(p).ok());
        Auth {
            basic: web.basic_username.clone().zip(web.basic_password.clone()),
            file,
            bearer: Mutex::new(Bearer {
                token: web.bearer_token.clone(),
                stamp,
                failing: false,
            }),
        }
    }

    /// Checks an `Authorization` header against the credentials in force.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), AuthError> {
        let credentials = Credentials {
            bearer: self.bearer(),
            basic: self.basic.clone(),
        };
        credentials.check(authorization)
    }

    /// The bearer token, re-read first if its file changed.
    fn bearer(&self) -> Option<String> {
        let mut b = lock(&self.bearer);
        let Some(path) = &self.file else {
            return b.token.clone();
        };
        let read = stamp_of(path).and_then(|stamp| {
            if b.stamp == Some(stamp) && !b.failing {
                return Ok(None);
            }
            let text = std::fs::read_to_string(path)?;
            let token = text.trim_end().to_string();
            if token.len() < MIN_TOKEN_LEN {
                // As at start: a short (or empty, half-written) token is
                // refused, and the one in force stays.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the token is shorter than {MIN_TOKEN_LEN} characters"),
                ));
            }
            Ok(Some((stamp, token)))
        });
        match read {
            Ok(None) => {}
            Ok(Some((stamp, token))) => {
                if b.failing {
                    tracing::info!(path = %path.display(), "the bearer token file can be read again");
                }
                if b.token.as_deref() != Some(token.as_str()) {
                    tracing::info!(path = %path.display(), "the bearer token file changed; the new token is in force");
                }
                b.token = Some(token);
                b.stamp = Some(stamp);
                b.failing = false;
            }
            Err(e) => {
                if !b.failing {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the bearer token file; the token read last stays in force");
                }
                b.failing = true;
            }
        }
        b.token.clone()
    }
}

fn stamp_of(path: &std::path::Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.ino(), m.len(), m.modified().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    #[test]
    fn a_rewritten_token_file_takes_effect_and_a_missing_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token-0123456789\n").unwrap();
        let web = WebConfig {
            bearer_token: Some("first-token-0123456789".into()),
            bearer_token_file: Some(path.clone()),
            ..WebConfig::default()
        };
        let auth = Auth::new(&web);
        assert!(auth.check(Some(&bearer("first-token-0123456789"))).is_ok());
        // Replaced as init-secrets.sh does: a new file moved over it.
        let tmp = dir.path().join("token.tmp");
        std::fs::write(&tmp, "second-token-0123456789").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(
            auth.check(Some(&bearer("first-token-0123456789"))),
            Err(AuthError::Wrong)
        );
        assert!(auth.check(Some(&bearer("second-token-0123456789"))).is_ok());
        // Gone, or empty: the last token stays.
        std::fs::remove_file(&path).unwrap();
        assert!(auth.check(Some(&bearer("second-token-0123456789"))).is_ok());
        std::fs::write(&path, "").unwrap();
        assert!(auth.check(Some(&bearer("second-token-0123456789"))).is_ok());
        std::fs::write(&path, "short").unwrap();
        assert!(auth.check(Some(&bearer("short"))).is_err());
        assert!(auth.check(Some(&bearer("second-token-0123456789"))).is_ok());
        std::fs::write(&path, "third-token-0123456789").unwrap();
        assert!(auth.check(Some(&bearer("third-token-0123456789"))).is_ok());
    }
}
