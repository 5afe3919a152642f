//! Who is calling (docs/architecture.md §4): HTTP Basic for users (`mail:secret`, argon2id), for `root`
//! and for units (`node`), or a bearer token from `POST /auth/token`.
//!
//! What a login may cost and how failures are limited is `crate::logins`. Tokens are stored
//! (by hash) and carry a stamp of the owner's secret hash when minted: a secret change makes
//! every older token of that user invalid on every replica at once (the stamp no longer
//! matches the stored user), and `DELETE /auth/token(s)` removes them from the store. Root
//! has tokens too, stamped with root's secret hash, which a rotation replaces.
//!
//! The checks here take credentials already read off the request (`http::extract` reads the
//! Authorization header and the TCP peer, and hands them over).

use std::net::{IpAddr, SocketAddr};

use uuid::Uuid;

use crate::error::ApiError;
use crate::logins::Account;
use crate::models::{ROOT_OWNER, User};
use crate::secrets::same;
// Where they were first: kept reachable from here for the integration tests.
pub use crate::secrets::{digest, secret_stamp};
use crate::state::AppState;

/// The caller of a user route.
#[derive(Debug, Clone)]
pub enum Caller {
    Root,
    User(User),
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::Root => true,
            Caller::User(u) => u.admin_platform,
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Caller::Root => None,
            Caller::User(u) => Some(u.id),
        }
    }

    /// May this caller see an object owned by `owner`? Others' objects answer 404.
    pub fn can_see(&self, owner: Option<Uuid>) -> bool {
        self.is_admin() || (owner.is_some() && owner == self.user_id())
    }

    /// The caller as an owning user; root owns nothing.
    pub fn require_user(&self) -> Result<&User, ApiError> {
        match self {
            Caller::User(u) => Ok(u),
            Caller::Root => Err(ApiError::forbidden(
                "root owns no medias: create a user (POST /api/v1/users) and call as that user",
            )),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "only root or an admin_platform user may do this",
            ))
        }
    }
}

/// Credentials as the Authorization header carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP Basic: a mail (or `root`, `node`) and a secret.
    Basic(String, String),
    Bearer(String),
}

const BAD_CREDENTIALS: &str = "wrong credentials";

/// The caller of a node route: a unit, with `node:<node secret>`.
#[derive(Debug, Clone, Copy)]
pub struct Node;

/// Where a node login comes from, for the log line of a refusal: the TCP peer, the unit the
/// route names (when it names one) and the route, both bounded by the caller.
#[derive(Debug, Clone, Copy)]
pub struct NodeCall<'a> {
    pub peer: Option<SocketAddr>,
    pub unit_id: Option<&'a str>,
    pub path: &'a str,
}

/// A unit, when `credentials` are `node:<node secret>`.
pub fn node(
    state: &AppState,
    credentials: Credentials,
    call: NodeCall<'_>,
) -> Result<Node, ApiError> {
    match credentials {
        Credentials::Basic(user, secret) if user == "node" => {
            let ip = call.peer.map(|addr| addr.ip());
            state.logins.check(Account::Node, ip)?;
            if same(&secret, &state.secrets.node) {
                Ok(Node)
            } else {
                state.logins.failed(Account::Node, ip);
                // A unit with the wrong secret is a misconfiguration: say so, with who.
                state
                    .logins
                    .node_refused(call.peer, call.unit_id, call.path);
                Err(ApiError::unauthorized(BAD_CREDENTIALS))
            }
        }
        _ => Err(ApiError::forbidden(
            "node routes are for units, with node:<node secret>",
        )),
    }
}

/// The caller and how it proved it: with its secret (HTTP Basic) or with a bearer token.
/// Routes that need the secret itself (changing it, minting tokens) take this.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Caller,
    /// The stored hash of the bearer token used, if one was.
    pub token: Option<String>,
}

impl Authenticated {
    /// Forbidden unless the caller sent its secret (HTTP Basic), saying what needs it.
    pub fn require_secret(&self, what: &str) -> Result<(), ApiError> {
        match self.token {
            None => Ok(()),
            Some(_) => Err(ApiError::forbidden(format!(
                "{what} needs the secret: call with HTTP Basic (mail:secret), not a bearer token"
            ))),
        }
    }
}

/// The caller a bearer token stands for: its user, or root ([`ROOT_OWNER`]), while it
/// has not expired and its stamp matches the owner's secret as stored now.
pub async fn bearer(state: &AppState, token: &str) -> Result<Authenticated, ApiError> {
    let hash = digest(&[token]);
    let token = state
        .store
        .get_token(&hash)
        .await?
        .filter(|t| t.expires_at > chrono::Utc::now())
        .ok_or_else(|| ApiError::unauthorized("unknown or expired token"))?;
    let (caller, stored) = if token.user_id == ROOT_OWNER {
        let hash = state
            .store
            .root_secret_hash()
            .await?
            .ok_or_else(|| ApiError::unauthorized("root has no secret on this store"))?;
        (Caller::Root, hash)
    } else {
        let record = state
            .store
            .get_user(token.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token's user is gone"))?;
        (Caller::User(record.user), record.secret_hash)
    };
    if !same(&token.secret_stamp, &secret_stamp(&stored)) {
        return Err(ApiError::unauthorized(
            "token revoked: the secret changed since it was made",
        ));
    }
    Ok(Authenticated {
        caller,
        token: Some(hash),
    })
}

/// The caller `credentials` prove, sent from `ip` (the TCP peer, which the login limits key
/// on): root or a user by secret, or whoever a bearer token stands for.
pub async fn authenticate(
    state: &AppState,
    credentials: Credentials,
    ip: Option<IpAddr>,
) -> Result<Authenticated, ApiError> {
    match credentials {
        Credentials::Basic(user, secret) if user == "root" => root_login(state, &secret, ip).await,
        Credentials::Basic(user, _) if user == "node" => Err(ApiError::forbidden(
            "node credentials serve the node routes only",
        )),
        Credentials::Basic(mail, secret) => user_login(state, &mail, &secret, ip).await,
        Credentials::Bearer(token) => bearer(state, &token).await,
    }
}

fn by_secret(caller: Caller) -> Authenticated {
    Authenticated {
        caller,
        token: None,
    }
}

async fn root_login(
    state: &AppState,
    secret: &str,
    ip: Option<IpAddr>,
) -> Result<Authenticated, ApiError> {
    state.logins.check(Account::Root, ip)?;
    // Read at each login, so a rotation by any orchestra holds on all at once.
    let hash = state.store.root_secret_hash().await?;
    if hash
        .as_ref()
        .is_some_and(|hash| state.verified.check(&digest(&[hash, secret])))
    {
        return Ok(by_secret(Caller::Root));
    }
    let ok = state
        .argon
        .verify(secret.to_owned(), hash.clone(), || {
            state.logins.check(Account::Root, ip)
        })
        .await?;
    match hash {
        Some(hash) if ok => {
            state.verified.remember(digest(&[&hash, secret]));
            Ok(by_secret(Caller::Root))
        }
        _ => {
            state.logins.failed(Account::Root, ip);
            Err(ApiError::unauthorized(BAD_CREDENTIALS))
        }
    }
}

async fn user_login(
    state: &AppState,
    mail: &str,
    secret: &str,
    ip: Option<IpAddr>,
) -> Result<Authenticated, ApiError> {
    let account = Account::Mail(mail);
    state.logins.check(account, ip)?;
    let record = state.store.user_by_mail(mail).await?;
    if let Some(record) = &record {
        let key = digest(&[&record.secret_hash, secret]);
        if state.verified.check(&key) {
            return Ok(by_secret(Caller::User(record.user.clone())));
        }
    }
    let hash = record.as_ref().map(|r| r.secret_hash.clone());
    let ok = state
        .argon
        .verify(secret.to_owned(), hash, || state.logins.check(account, ip))
        .await?;
    match record {
        Some(record) if ok => {
            state
                .verified
                .remember(digest(&[&record.secret_hash, secret]));
            Ok(by_secret(Caller::User(record.user)))
        }
        _ => {
            state.logins.failed(account, ip);
            Err(ApiError::unauthorized(BAD_CREDENTIALS))
        }
    }
}
