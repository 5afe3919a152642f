//! What a password check may cost (issue 9): argon2 work is bounded, an unknown mail costs
//! what a wrong secret costs, and failed logins are rate-limited.
//!
//! - Each argon2id verification holds its memory (19 MiB with the default parameters) for
//!   tens of milliseconds. Unbounded, 128 concurrent wrong logins took the orchestra to 3 GB,
//!   so hashing and verifying run with at most `OSCIED_ARGON2_CONCURRENCY`
//!   (default: the number of cores) at once, on threads of their own; the others wait for a
//!   permit. The permit travels with the work, so a client that hangs up cannot free its
//!   slot early. The binary also fixes glibc's mmap threshold (`main.rs`), so the freed
//!   blocks go back to the system: 256 concurrent wrong logins peak at about 70 MB.
//! - An unknown mail is verified against a dummy hash made at start with the same
//!   parameters, so the answer time does not tell which mails have accounts.
//! - Failed logins are counted per account (a mail, `root`, `node`) and per client address
//!   (the TCP peer; IPv6 by /64), in keyed GCRA buckets (`governor`). Only failures take a
//!   cell, so scripts that log in correctly are never limited. While either bucket is empty
//!   every login of that account or address answers 429 with `Retry-After`, *before* any
//!   check and even with the right secret: answering a right secret normally would let a
//!   guesser keep guessing at full speed and learn from the one answer that differs. The
//!   price: someone who knows a mail can keep that account closed by failing on it; the
//!   per-address bucket bounds what one client can do. The buckets are in process memory,
//!   so each replica limits on its own (N replicas allow N times the rate).
//!   `node` is limited per address only: its secret is generated (256 bits, no guessing), and
//!   a per-account bucket would let anyone stop every unit of the cluster.

use std::cell::Cell;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{NotUntil, Quota, RateLimiter};
use tokio::sync::{Semaphore, oneshot};

use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::secrets::{hash_secret, random_token, verify_secret};

/// The argon2 gate: a semaphore, the threads argon2 runs on, and the dummy hash.
pub struct Argon {
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    dummy: String,
}

type Job = Box<dyn FnOnce() + Send>;

impl Argon {
    /// `concurrency` verifications or hashings at once (at least one), on as many threads of
    /// their own. Not tokio's blocking pool: glibc gives each thread its own malloc arena
    /// and keeps a freed 19 MiB block there, so argon2 spread over hundreds of pool threads
    /// kept gigabytes resident even when only two ran at a time.
    pub fn new(concurrency: usize) -> ApiResult<Argon> {
        let concurrency = concurrency.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..concurrency {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    // Ends when the Argon (the sender) is dropped.
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| ApiError::internal(format!("argon2 thread: {e}")))?;
        }
        Ok(Argon {
            permits: Arc::new(Semaphore::new(concurrency)),
            jobs,
            dummy: hash_secret(&random_token())?,
        })
    }

    /// Run `work` on an argon2 thread once a permit is free; `before` runs with the permit
    /// held, just before the work (the login limits are checked again there, so a burst of
    /// concurrent guesses cannot all pass the first check while the permits are busy).
    async fn run<T: Send + 'static>(
        &self,
        before: impl FnOnce() -> ApiResult<()>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::unavailable("the orchestra is stopping"))?;
        before()?;
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                // Freed only when the work is over, even if the caller hung up.
                drop(permit);
                if let Ok(out) = out {
                    let _ = done.send(out);
                }
            }))
            .map_err(|_| ApiError::internal("the argon2 threads are gone"))?;
        result
            .await
            .map_err(|_| ApiError::internal("an argon2 check failed"))
    }

    /// An argon2id hash of a new secret.
    pub async fn hash(&self, secret: String) -> ApiResult<String> {
        self.run(|| Ok(()), move || hash_secret(&secret)).await?
    }

    /// Does `secret` match `hash`? Without a hash (an unknown mail), the dummy one is
    /// checked, for the time it takes, and the answer is no.
    pub async fn verify(
        &self,
        secret: String,
        hash: Option<String>,
        before: impl FnOnce() -> ApiResult<()>,
    ) -> ApiResult<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let ok = self
            .run(before, move || verify_secret(&secret, &hash))
            .await?;
        Ok(ok && known)
    }
}

/// Who a login claims to be, as the per-account bucket sees it.
#[derive(Debug, Clone, Copy)]
pub enum Account<'a> {
    Root,
    Node,
    /// A mail, as typed (folded to lower case for the key: mail lookup ignores case).
    Mail(&'a str),
}

impl Account<'_> {
    fn key(self) -> Option<String> {
        match self {
            Account::Root => Some("root".to_owned()),
            Account::Node => None,
            // Users cannot be named root or node; a key is bounded like a mail.
            Account::Mail(mail) => Some(mail.to_lowercase().chars().take(320).collect()),
        }
    }
}

/// The login buckets, per account and per client address.
pub struct LoginLimits {
    account: Limiter<String>,
    address: Limiter<IpAddr>,
    swept: Mutex<Instant>,
    refused_nodes: RefusalLog,
}

/// How often a peer's refused node logins are logged (with the count of the ones not logged).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// Peers remembered for that; past it the oldest windows are forgotten (a flood from many
/// addresses logs more, it never grows memory).
const REFUSAL_PEERS: usize = 1024;

/// Which refused node logins get a log line: the first of each peer (and unit id it claims,
/// when the route names one) per [`REFUSAL_LOG_EVERY`], which says how many were left out
/// before it. A misconfigured unit retries every few seconds; a line per try would drown the
/// log. (The per-address login bucket bounds the refusals of one address anyway.)
#[derive(Default)]
struct RefusalLog {
    /// Per peer and unit id: when its last line was written, and the refusals since.
    peers: Mutex<std::collections::HashMap<RefusalKey, (Instant, u64)>>,
}

/// A refused peer's address, and the unit id the route named.
type RefusalKey = (Option<IpAddr>, Option<String>);

impl RefusalLog {
    /// Some(refusals not logged since the last line) when this one is to be logged.
    fn note(&self, peer: RefusalKey, now: Instant) -> Option<u64> {
        let mut peers = crate::locks::locked(&self.peers);
        if let Some((logged, suppressed)) = peers.get_mut(&peer) {
            if now.duration_since(*logged) < REFUSAL_LOG_EVERY {
                *suppressed += 1;
                return None;
            }
            let left_out = *suppressed;
            *logged = now;
            *suppressed = 0;
            return Some(left_out);
        }
        if peers.len() >= REFUSAL_PEERS {
            peers.retain(|_, (logged, _)| now.duration_since(*logged) < REFUSAL_LOG_EVERY);
            if peers.len() >= REFUSAL_PEERS {
                peers.clear();
            }
        }
        peers.insert(peer, (now, 0));
        Some(0)
    }
}

/// How often buckets back at rest are forgotten, so the maps hold only recent failures.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl LoginLimits {
    pub fn new(config: &Config) -> LoginLimits {
        LoginLimits {
            account: Limiter::new(config.login_account_burst, config.login_account_refill_secs),
            address: Limiter::new(config.login_address_burst, config.login_address_refill_secs),
            swept: Mutex::new(Instant::now()),
            refused_nodes: RefusalLog::default(),
        }
    }

    /// Log a node login refused for a wrong node secret: the unit it claims to be (from the
    /// route, when it names one), the route and the peer; once per peer per minute.
    pub fn node_refused(&self, peer: Option<SocketAddr>, unit_id: Option<&str>, path: &str) {
        let key = (peer.map(|p| p.ip()), unit_id.map(str::to_owned));
        let Some(left_out) = self.refused_nodes.note(key, Instant::now()) else {
            return;
        };
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        tracing::warn!(
            %peer,
            unit_id = unit_id.unwrap_or("(not in the route)"),
            %path,
            suppressed = left_out,
            "a unit was refused: wrong node secret (its OSCIED_NODE_SECRET must equal this \
             orchestra's node secret); logged once a minute per peer, {left_out} more refused \
             since the last line"
        );
    }

    /// 429 when this account or this address has no failure left, else Ok.
    pub fn check(&self, account: Account<'_>, ip: Option<IpAddr>) -> ApiResult<()> {
        let by_account = account.key().and_then(|k| self.account.wait(&k));
        let by_address = ip.and_then(|ip| self.address.wait(&client_key(ip)));
        let (wait, whom) = match (by_account, by_address) {
            (Some(a), Some(b)) if b > a => (b, "from this address"),
            (Some(a), _) => (a, "for this account"),
            (None, Some(b)) => (b, "from this address"),
            (None, None) => return Ok(()),
        };
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        Err(ApiError::too_many_requests(
            format!("too many failed logins {whom}; retry in {secs} s"),
            secs,
        ))
    }

    /// Count a failed login against the account and the address.
    pub fn failed(&self, account: Account<'_>, ip: Option<IpAddr>) {
        if let Some(key) = account.key() {
            self.account.take(&key);
        }
        if let Some(ip) = ip {
            self.address.take(&client_key(ip));
        }
        self.sweep();
    }

    fn sweep(&self) {
        let Ok(mut swept) = self.swept.lock() else {
            return;
        };
        if swept.elapsed() >= SWEEP_EVERY {
            *swept = Instant::now();
            drop(swept);
            self.account.sweep();
            self.address.sweep();
        }
    }

    /// Keys currently held (accounts, addresses): for tests of the sweep.
    pub fn held(&self) -> (usize, usize) {
        (self.account.main.len(), self.address.main.len())
    }
}

/// An IPv6 client gets a /64 (one subscriber's usual share) as its key; IPv4 and
/// IPv4-mapped addresses are keyed by themselves.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// One keyed GCRA bucket set, with a way to look without taking a cell: `main` takes cells
/// (failures), `peek` reads the same state and never writes it. Both started together, on
/// the same clock, so they read the state alike.
struct Limiter<K: Hash + Eq + Clone> {
    main: RateLimiter<K, Shared<K>, DefaultClock>,
    peek: RateLimiter<K, Peek<K>, DefaultClock>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(burst: u32, refill_secs: u64) -> Limiter<K> {
        let quota = Quota::with_period(Duration::from_secs(refill_secs.max(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let state: Arc<DashMapStateStore<K>> = Arc::default();
        let clock = DefaultClock::default();
        Limiter {
            main: RateLimiter::new(quota, Shared(state.clone()), clock.clone()),
            peek: RateLimiter::new(quota, Peek(state), clock),
        }
    }

    /// How long until this key may fail again; None when it may now.
    fn wait(&self, key: &K) -> Option<Duration> {
        self.peek
            .check_key(key)
            .err()
            .map(|not_until: NotUntil<_>| not_until.wait_time_from(self.peek.clock().now()))
    }

    fn take(&self, key: &K) {
        let _ = self.main.check_key(key);
    }

    fn sweep(&self) {
        self.main.retain_recent();
        self.main.shrink_to_fit();
    }
}

struct Shared<K: Hash + Eq + Clone>(Arc<DashMapStateStore<K>>);

impl<K: Hash + Eq + Clone> StateStore for Shared<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for Shared<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

/// Reads a key's state and runs the decision on it, but never stores the outcome (and never
/// adds a key).
struct Peek<K: Hash + Eq + Clone>(Arc<DashMapStateStore<K>>);

impl<K: Hash + Eq + Clone> StateStore for Peek<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if !self.0.contains_key(key) {
            return f(None).map(|(t, _)| t);
        }
        // Read the current value by declining to replace it.
        let seen = Cell::new(None);
        let _ = self.0.measure_and_replace(key, |current| {
            seen.set(Some(current));
            Err::<((), Nanos), ()>(())
        });
        f(seen.get().flatten()).map(|(t, _)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_taken_cells_count_and_peeking_takes_none() {
        let limiter: Limiter<String> = Limiter::new(3, 3600);
        let key = "ada@example.com".to_owned();
        for _ in 0..10 {
            assert_eq!(limiter.wait(&key), None, "peeking takes no cell");
        }
        for _ in 0..3 {
            assert_eq!(limiter.wait(&key), None);
            limiter.take(&key);
        }
        let wait = limiter.wait(&key).expect("the bucket is empty");
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
        assert_eq!(limiter.wait(&"bob@example.com".to_owned()), None);
    }

    #[test]
    fn refused_node_logins_are_logged_once_a_minute_per_peer() {
        let log = RefusalLog::default();
        let a = (
            Some("192.0.2.1".parse().unwrap()),
            Some("unit-a".to_owned()),
        );
        let b = (Some("192.0.2.1".parse().unwrap()), None);
        let t0 = Instant::now();
        assert_eq!(log.note(a.clone(), t0), Some(0));
        assert_eq!(log.note(a.clone(), t0 + Duration::from_secs(5)), None);
        assert_eq!(log.note(a.clone(), t0 + Duration::from_secs(10)), None);
        assert_eq!(log.note(b.clone(), t0 + Duration::from_secs(10)), Some(0));
        assert_eq!(log.note(b, t0 + Duration::from_secs(11)), None);
        // A minute after its last line, with the count of what was left out.
        assert_eq!(log.note(a.clone(), t0 + Duration::from_secs(61)), Some(2));
        assert_eq!(log.note(a, t0 + Duration::from_secs(62)), None);
        for n in 0..(REFUSAL_PEERS as u32 + 10) {
            log.note((Some(IpAddr::from(n.to_be_bytes())), None), t0);
        }
        assert!(log.peers.lock().unwrap().len() <= REFUSAL_PEERS);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn unknown_mails_are_checked_against_the_dummy_and_refused() {
        let argon = Argon::new(1).unwrap();
        let hash = argon.hash("the-right-one".to_owned()).await.unwrap();
        assert!(
            argon
                .verify("the-right-one".into(), Some(hash.clone()), || Ok(()))
                .await
                .unwrap()
        );
        assert!(
            !argon
                .verify("wrong".into(), Some(hash), || Ok(()))
                .await
                .unwrap()
        );
        assert!(
            !argon
                .verify("anything".into(), None, || Ok(()))
                .await
                .unwrap()
        );
    }
}
