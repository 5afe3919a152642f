//! The orchestra's secrets and the hashing they need: root's and the node secret as settled
//! at start, argon2id for users' and root's secrets, BLAKE2b digests for token and cache keys,
//! and the cache of successful argon2 checks. A leaf under the components that use it (the
//! argon2 gate, the login checks, tokens): it knows no request and no state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use blake2::{Blake2b512, Digest};
use uuid::Uuid;

use crate::error::ApiError;

/// The node secret, and root's when this orchestra knows it (given, kept in its data dir or
/// generated now). Root logins are checked against the argon2 hash kept in the store, which
/// every orchestra on that store shares.
pub struct Secrets {
    pub root: Option<String>,
    pub node: String,
}

/// How root's secret was settled at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSecret {
    /// Generated now, by the first orchestra on this store: to announce, once.
    Generated(String),
    /// Given or kept in the data dir, and root's on this store.
    Known(String),
    /// Only the store's hash is known here (another orchestra generated it).
    Stored,
}

/// Why the secrets refuse to start.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Refused(String),
}

impl Secrets {
    /// Root's secret (see [`root_secret`]), then the node secret: from `node`, else (standalone
    /// only) from `<data dir>/node_secret`, else generated and kept there. In cluster mode the
    /// units on other hosts need its plain value, so it must be given.
    pub async fn load(
        data_dir: &Path,
        store: &dyn crate::store::Store,
        root: Option<&str>,
        rotate_root: bool,
        node: Option<&str>,
        cluster: bool,
    ) -> Result<(Secrets, RootSecret), SecretError> {
        let node = node.filter(|s| !s.is_empty());
        if cluster && node.is_none() {
            return Err(SecretError::Refused(
                "cluster mode (OSCIED_AMQP_URI set) needs OSCIED_NODE_SECRET: give every \
                 orchestra and every unit the same value"
                    .into(),
            ));
        }
        let settled = root_secret(data_dir, store, root, rotate_root).await?;
        let (node, _) = secret(data_dir, "node_secret", node)?;
        let root = match &settled {
            RootSecret::Generated(s) | RootSecret::Known(s) => Some(s.clone()),
            RootSecret::Stored => None,
        };
        Ok((Secrets { root, node }, settled))
    }
}

/// Root's secret against the hash kept in the store. On an empty store the given secret,
/// else the one kept in `<data dir>/root_secret` (an older orchestra's), else a fresh one is
/// hashed and inserted; of orchestras starting at once only the first insert counts, and
/// only a fresh secret that won is written to the data dir (to be announced). A given secret
/// that is not the store's refuses to start, unless `rotate` replaces the store's hash.
pub async fn root_secret(
    data_dir: &Path,
    store: &dyn crate::store::Store,
    given: Option<&str>,
    rotate: bool,
) -> Result<RootSecret, SecretError> {
    let path = data_dir.join("root_secret");
    let given = given.filter(|s| !s.is_empty()).map(str::to_owned);
    let kept = match std::fs::read_to_string(&path) {
        Ok(kept) if !kept.trim().is_empty() => Some(kept.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => None,
    };
    if let Some(hash) = store.root_secret_hash().await? {
        return check_root(&path, &hash, given, kept, rotate, store).await;
    }
    let (candidate, fresh) = match given.clone().or(kept.clone()) {
        Some(known) => (known, false),
        None => (random_token(), true),
    };
    if store
        .insert_root_secret_hash(&blocking_hash(&candidate).await?)
        .await?
    {
        if fresh {
            write_private(&path, &candidate)?;
            return Ok(RootSecret::Generated(candidate));
        }
        return Ok(RootSecret::Known(candidate));
    }
    // Another orchestra inserted first: its hash is root's; a fresh secret is dropped.
    let hash = store
        .root_secret_hash()
        .await?
        .ok_or_else(|| SecretError::Refused("root's secret vanished from the store".into()))?;
    check_root(&path, &hash, given, kept, rotate, store).await
}

async fn check_root(
    path: &Path,
    hash: &str,
    given: Option<String>,
    kept: Option<String>,
    rotate: bool,
    store: &dyn crate::store::Store,
) -> Result<RootSecret, SecretError> {
    if let Some(given) = given {
        if blocking_verify(&given, hash).await {
            return Ok(RootSecret::Known(given));
        }
        if !rotate {
            return Err(SecretError::Refused(
                "OSCIED_ROOT_SECRET is not root's secret on this store (kept there by the \
                 first orchestra on it): give every orchestra on the store the same one, \
                 unset it to use the store's, or add OSCIED_ROTATE_ROOT_SECRET=true to \
                 replace it for all of them"
                    .into(),
            ));
        }
        store
            .set_root_secret_hash(&blocking_hash(&given).await?)
            .await?;
        // Their stamps no longer match already, on every replica; this clears them.
        store.delete_user_tokens(crate::models::ROOT_OWNER).await?;
        tracing::warn!(
            "root's secret replaced in the store (OSCIED_ROTATE_ROOT_SECRET): every \
             orchestra on it now takes only the new one; unset OSCIED_ROTATE_ROOT_SECRET"
        );
        return Ok(RootSecret::Known(given));
    }
    match kept {
        Some(kept) if blocking_verify(&kept, hash).await => Ok(RootSecret::Known(kept)),
        Some(_) => {
            tracing::error!(
                file = %path.display(),
                "this file does not hold root's secret on this store (another store's?): \
                 root's secret is the store's; delete the file"
            );
            Ok(RootSecret::Stored)
        }
        None => Ok(RootSecret::Stored),
    }
}

async fn blocking_hash(secret: &str) -> Result<String, SecretError> {
    let secret = secret.to_owned();
    tokio::task::spawn_blocking(move || hash_secret(&secret))
        .await
        .map_err(|e| SecretError::Refused(format!("hashing root's secret: {e}")))?
        .map_err(|e| SecretError::Refused(e.message))
}

async fn blocking_verify(secret: &str, hash: &str) -> bool {
    let (secret, hash) = (secret.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
        .await
        .unwrap_or(false)
}

fn secret(dir: &Path, name: &str, given: Option<&str>) -> std::io::Result<(String, bool)> {
    if let Some(given) = given.filter(|s| !s.is_empty()) {
        return Ok((given.to_owned(), false));
    }
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(kept) if !kept.trim().is_empty() => return Ok((kept.trim().to_owned(), false)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let fresh = random_token();
    write_private(&path, &fresh)?;
    Ok((fresh, true))
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")
}

/// 256 random bits as hex (UUID v4 draws from the OS's CSPRNG).
pub fn random_token() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    hex(&bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// BLAKE2b of `parts` (joined with NUL), as hex: token keys and cache keys.
pub fn digest(parts: &[&str]) -> String {
    let mut hasher = Blake2b512::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part.as_bytes());
    }
    hex(&hasher.finalize())
}

/// An argon2id hash (PHC string) of a user's secret. Synchronous: call through the bounded
/// argon2 gate (`logins::Argon`).
pub(crate) fn hash_secret(secret: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("hashing: {e}")))
}

/// Synchronous argon2: call through `logins::Argon`, which bounds and offloads it.
pub(crate) fn verify_secret(secret: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(secret.as_bytes(), hash)
        .is_ok()
}

/// Argon2 costs tens of milliseconds by design; scripts call many times in a row with the
/// same credentials. A successful check is remembered for a few minutes, keyed by a digest of
/// the secret *and* the stored hash. Every login reads the user from the store, and a secret
/// change stores a new hash (new salt), so after a change the old secret's key is never
/// looked up again, on any replica.
#[derive(Default)]
pub struct VerifiedCache {
    entries: Mutex<HashMap<String, Instant>>,
}

const VERIFIED_TTL: Duration = Duration::from_secs(300);

impl VerifiedCache {
    pub(crate) fn check(&self, key: &str) -> bool {
        self.entries
            .lock()
            .map(|e| e.get(key).is_some_and(|t| t.elapsed() < VERIFIED_TTL))
            .unwrap_or(false)
    }

    pub(crate) fn remember(&self, key: String) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                entries.retain(|_, t| t.elapsed() < VERIFIED_TTL);
            }
            entries.insert(key, Instant::now());
        }
    }
}

/// Constant-time comparison for the root and node secrets and for token stamps.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The stamp a token carries of its owner's secret hash (a user's, or root's): a token is
/// valid only while it matches.
pub fn secret_stamp(secret_hash: &str) -> String {
    digest(&["token-stamp", secret_hash])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify() {
        let hash = hash_secret("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_secret("correct horse", &hash));
        assert!(!verify_secret("wrong", &hash));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cret", "s3creT"));
        assert!(!same("s3cret", "s3cret!"));
        assert!(!same("", "x"));
    }

    #[tokio::test]
    async fn secrets_are_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("oscied.db")).unwrap();
        let load = |root, cluster| Secrets::load(dir.path(), &store, root, false, None, cluster);
        let (first, generated) = load(None, false).await.unwrap();
        let RootSecret::Generated(root) = generated else {
            panic!("generated: {generated:?}")
        };
        let (again, settled) = load(None, false).await.unwrap();
        assert_eq!(settled, RootSecret::Known(root.clone()));
        assert_eq!(first.node, again.node);
        assert_ne!(root, first.node);
        // Another data dir on the same store: root's is the store's, never generated again.
        let other = tempfile::tempdir().unwrap();
        let (_, settled) = Secrets::load(other.path(), &store, None, false, None, false)
            .await
            .unwrap();
        assert_eq!(settled, RootSecret::Stored);
        assert!(!other.path().join("root_secret").exists());
        // A different given secret is refused, unless it rotates.
        let refused = load(Some("mine"), false).await.err().unwrap().to_string();
        assert!(refused.contains("OSCIED_ROTATE_ROOT_SECRET"), "{refused}");
        let (_, settled) = Secrets::load(dir.path(), &store, Some("mine"), true, None, false)
            .await
            .unwrap();
        assert_eq!(settled, RootSecret::Known("mine".into()));
        assert_eq!(
            load(Some("mine"), false).await.unwrap().1,
            RootSecret::Known("mine".into())
        );
        // Cluster mode wants the node secret given.
        let refused = load(None, true).await.err().unwrap().to_string();
        assert!(refused.contains("OSCIED_NODE_SECRET"), "{refused}");
    }
}
