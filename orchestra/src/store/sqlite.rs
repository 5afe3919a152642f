//! The embedded store of standalone mode: one SQLite file in the data dir.
//!
//! Each record is a JSON document in a `doc` column (the same JSON the API answers), with the
//! unique keys in real columns so SQLite enforces them. Queries filter and sort with
//! `json_extract`, so a new field needs no migration. rusqlite is synchronous: calls run on
//! the blocking pool behind one connection (SQLite serialises writers anyway).
//!
//! Medias and tasks keep their fence ([`Revised`]) in a `rev` column beside the doc: an
//! update is one `UPDATE ... WHERE id = ? AND rev = ?` that bumps it, so it holds across
//! connections too, not only behind this store's mutex. A task's hold (a completion under
//! way, [`Hold`]) is JSON in a `hold` column beside them, written and read with the revision.
//! Files made before these columns existed get them on open (`rev` 0, no hold).
//!
//! How many medias and tasks each user has of each status is kept in `counts`, by triggers on
//! the fenced tables, in the statement that changes a record: a page's `total` for a user's
//! or a status filter (a queue's page, the overview) reads a few counters instead of counting
//! every match (10,000 queued tasks: 1.5 ms a page). Files made before it get it filled on
//! open. The `leases` table holds the background loops' leases (`expires_at` in Unix
//! microseconds).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use oscied_protocol::TaskStatus;
use oscied_protocol::node::UnitKind;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params, params_from_iter, types::Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult};
use crate::models::{
    ActiveTasks, Counted, Delivery, DeliveryFilter, DeliveryStatus, Hold, Idempotency, ListOptions,
    Media, MediaFilter, Page, ProfileFilter, PublisherTask, Revised, TaskFilter, TaskGroup, Token,
    TransformProfile, TransformTask, Unit, User, UserFilter, UserRecord, WebhookFilter,
    WebhookRecord,
};

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

// A queue's page (`status=PENDING`, by creation) walks `*_status_created` in order instead of
// sorting every match (a user's page, every list but an admin's, `*_user_status_created`, which
// also counts its total without reading the documents), and the dispatch loop's undispatched
// scan (`dispatched_at` null) finds its few rows in `*_status_dispatched` the same way.
const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    mail_key TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS medias (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    rev INTEGER NOT NULL DEFAULT 0,
    hold TEXT
);
CREATE INDEX IF NOT EXISTS medias_user ON medias (json_extract(doc, '$.user_id'));
CREATE INDEX IF NOT EXISTS medias_status ON medias (json_extract(doc, '$.status'));
CREATE INDEX IF NOT EXISTS medias_parent ON medias (json_extract(doc, '$.parent_id'));
CREATE INDEX IF NOT EXISTS medias_created ON medias (json_extract(doc, '$.created_at'));
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens (json_extract(doc, '$.user_id'));
CREATE TABLE IF NOT EXISTS transform_tasks (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    rev INTEGER NOT NULL DEFAULT 0,
    hold TEXT
);
CREATE INDEX IF NOT EXISTS transform_tasks_user ON transform_tasks (json_extract(doc, '$.user_id'));
CREATE INDEX IF NOT EXISTS transform_tasks_status
    ON transform_tasks (json_extract(doc, '$.status'));
CREATE INDEX IF NOT EXISTS transform_tasks_media_in
    ON transform_tasks (json_extract(doc, '$.media_in_id'));
CREATE INDEX IF NOT EXISTS transform_tasks_media_out
    ON transform_tasks (json_extract(doc, '$.media_out_id'));
CREATE INDEX IF NOT EXISTS transform_tasks_queue ON transform_tasks (json_extract(doc, '$.queue'));
CREATE INDEX IF NOT EXISTS transform_tasks_created
    ON transform_tasks (json_extract(doc, '$.created_at'));
CREATE INDEX IF NOT EXISTS transform_tasks_status_created ON transform_tasks
    (json_extract(doc, '$.status'), json_extract(doc, '$.created_at'), id);
CREATE INDEX IF NOT EXISTS transform_tasks_user_status_created ON transform_tasks
    (json_extract(doc, '$.user_id'), json_extract(doc, '$.status'),
     json_extract(doc, '$.created_at'), id);
CREATE INDEX IF NOT EXISTS transform_tasks_status_dispatched ON transform_tasks
    (json_extract(doc, '$.status'), json_extract(doc, '$.dispatched_at'),
     json_extract(doc, '$.created_at'), id);
CREATE TABLE IF NOT EXISTS publisher_tasks (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    rev INTEGER NOT NULL DEFAULT 0,
    hold TEXT
);
CREATE INDEX IF NOT EXISTS publisher_tasks_user ON publisher_tasks (json_extract(doc, '$.user_id'));
CREATE INDEX IF NOT EXISTS publisher_tasks_status
    ON publisher_tasks (json_extract(doc, '$.status'));
CREATE INDEX IF NOT EXISTS publisher_tasks_media
    ON publisher_tasks (json_extract(doc, '$.media_id'));
CREATE INDEX IF NOT EXISTS publisher_tasks_queue ON publisher_tasks (json_extract(doc, '$.queue'));
CREATE INDEX IF NOT EXISTS publisher_tasks_created
    ON publisher_tasks (json_extract(doc, '$.created_at'));
CREATE INDEX IF NOT EXISTS publisher_tasks_status_created ON publisher_tasks
    (json_extract(doc, '$.status'), json_extract(doc, '$.created_at'), id);
CREATE INDEX IF NOT EXISTS publisher_tasks_user_status_created ON publisher_tasks
    (json_extract(doc, '$.user_id'), json_extract(doc, '$.status'),
     json_extract(doc, '$.created_at'), id);
CREATE INDEX IF NOT EXISTS publisher_tasks_status_dispatched ON publisher_tasks
    (json_extract(doc, '$.status'), json_extract(doc, '$.dispatched_at'),
     json_extract(doc, '$.created_at'), id);
CREATE TABLE IF NOT EXISTS units (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    rev INTEGER NOT NULL DEFAULT 0,
    hold TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_user ON webhooks (json_extract(doc, '$.user_id'));
CREATE INDEX IF NOT EXISTS webhooks_task ON webhooks (json_extract(doc, '$.task_id'));
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    rev INTEGER NOT NULL DEFAULT 0,
    hold TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_webhook_created ON deliveries
    (json_extract(doc, '$.webhook_id'), json_extract(doc, '$.created_at'));
CREATE INDEX IF NOT EXISTS deliveries_status_next ON deliveries
    (json_extract(doc, '$.status'), json_extract(doc, '$.next_at'));
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
";

/// The tables of fenced records, which older files lack the fence's columns of.
const FENCED: [&str; 3] = ["medias", "transform_tasks", "publisher_tasks"];

/// The fence's columns beside a fenced record's doc, as an older file is given them.
const FENCE_COLUMNS: [(&str, &str); 2] = [("rev", "INTEGER NOT NULL DEFAULT 0"), ("hold", "TEXT")];

impl SqliteStore {
    /// Open (or create) the database file and its schema.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let mut conn = Connection::open(path).map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        add_fence_columns(&mut conn)?;
        add_counts(&mut conn)?;
        // SQLite's lower() folds ASCII only; searches must fold like MongoDB's /i regex.
        conn.create_scalar_function(
            "unicode_lower",
            1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| Ok(ctx.get::<Option<String>>(0)?.map(|s| s.to_lowercase())),
        )
        .map_err(unavailable)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| StoreError::Unavailable("sqlite connection poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite task: {e}")))?
    }

    async fn get_doc<T: Stored>(
        &self,
        table: &'static str,
        key: &'static str,
        id: String,
    ) -> StoreResult<Option<T>> {
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {} FROM {table} WHERE {key} = ?1", T::COLUMNS),
                [id],
                |r| Ok(T::from_row(r)),
            )
            .optional()
            .map_err(unavailable)?
            .transpose()
        })
        .await
    }

    async fn put_doc<T: Serialize>(
        &self,
        sql: impl Into<String>,
        values: Vec<Value>,
        doc: &T,
        unique: &'static str,
    ) -> StoreResult<usize> {
        let sql = sql.into();
        let mut values = values;
        values.push(Value::Text(encode(doc)?));
        self.with(move |c| {
            c.execute(&sql, params_from_iter(values))
                .map_err(|e| conflict_or(e, unique))
        })
        .await
    }

    /// Insert the fenced `record` into `table` at its revision; a taken id is a Conflict.
    async fn insert_fenced<T: Serialize + Revised>(
        &self,
        table: &'static str,
        id: Uuid,
        record: &T,
    ) -> StoreResult<()> {
        self.put_doc(
            format!("INSERT INTO {table} (id, rev, hold, doc) VALUES (?1, ?2, ?3, ?4)"),
            vec![
                Value::Text(id.to_string()),
                rev_value(record.revision())?,
                hold_value(record.hold())?,
            ],
            record,
            "id",
        )
        .await
        .map(drop)
    }

    /// Replace the doc of `id` in `table` if its revision is still `record`'s, bumping it
    /// on both; false, writing nothing, when it is gone or changed underneath. One
    /// statement, so the check and the write cannot be split by another writer.
    async fn replace_fenced<T: Serialize + Revised>(
        &self,
        table: &'static str,
        id: Uuid,
        record: &mut T,
    ) -> StoreResult<bool> {
        let revision = record.revision();
        let replaced = self
            .put_doc(
                format!(
                    "UPDATE {table} SET hold = ?3, doc = ?4, rev = rev + 1 WHERE id = ?1 AND rev = ?2"
                ),
                vec![
                    Value::Text(id.to_string()),
                    rev_value(revision)?,
                    hold_value(record.hold())?,
                ],
                &*record,
                "id",
            )
            .await?
            > 0;
        if replaced {
            record.set_revision(revision + 1);
        }
        Ok(replaced)
    }

    /// Remove every record of `table` whose doc's `expires_at` is before `t`; how many.
    async fn delete_expired(&self, table: &'static str, t: DateTime<Utc>) -> StoreResult<u64> {
        let bound = ts_bound(t);
        self.with(move |c| {
            c.execute(
                &format!("DELETE FROM {table} WHERE json_extract(doc, '$.expires_at') < ?1"),
                [bound],
            )
            .map(|n| n as u64)
            .map_err(unavailable)
        })
        .await
    }

    async fn delete(&self, table: &'static str, id: String) -> StoreResult<bool> {
        self.with(move |c| {
            c.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])
                .map(|n| n > 0)
                .map_err(unavailable)
        })
        .await
    }

    /// One page of `table` where all of `clauses` hold, with the total.
    async fn list<T: Stored>(
        &self,
        table: &'static str,
        where_: Where,
        opts: &ListOptions,
    ) -> StoreResult<Page<T>> {
        self.list_counted(table, where_, None, opts).await
    }

    /// [`SqliteStore::list`], its total read from `counts` when `counted` (a filter of owner
    /// and statuses only, on the counters) is given.
    async fn list_counted<T: Stored>(
        &self,
        table: &'static str,
        where_: Where,
        counted: Option<Where>,
        opts: &ListOptions,
    ) -> StoreResult<Page<T>> {
        let path = json_path(opts.sort)?;
        let order = if opts.descending { "DESC" } else { "ASC" };
        let limit = i64::try_from(opts.limit).unwrap_or(i64::MAX);
        let skip = i64::try_from(opts.skip).unwrap_or(i64::MAX);
        let opts = opts.clone();
        self.with(move |c| {
            let cond = where_.sql();
            let sql = format!(
                "SELECT {} FROM {table} {cond} ORDER BY json_extract(doc, '{path}') {order}, id {order} LIMIT {limit} OFFSET {skip}",
                T::COLUMNS
            );
            let mut stmt = c.prepare(&sql).map_err(unavailable)?;
            let items = stmt
                .query_map(params_from_iter(where_.values.iter()), |r| Ok(T::from_row(r)))
                .map_err(unavailable)?
                .map(|row| row.map_err(unavailable)?)
                .collect::<StoreResult<Vec<_>>>()?;
            // The count only when the page does not tell the total (see `total_of_page`).
            let total = match opts.total_of_page(items.len()) {
                Some(total) => total,
                None => {
                    let n: i64 = match &counted {
                        Some(counters) => c.query_row(
                            &format!("SELECT COALESCE(SUM(n), 0) FROM counts {}", counters.sql()),
                            params_from_iter(counters.values.iter()),
                            |r| r.get(0),
                        ),
                        None => c.query_row(
                            &format!("SELECT COUNT(*) FROM {table} {cond}"),
                            params_from_iter(where_.values.iter()),
                            |r| r.get(0),
                        ),
                    }
                    .map_err(unavailable)?;
                    u64::try_from(n).unwrap_or(0)
                }
            };
            Ok(Page { items, total })
        })
        .await
    }
}

/// A conjunction of SQL conditions with their bound values.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    values: Vec<Value>,
}

impl Where {
    fn eq(&mut self, path: &str, value: impl ToString) {
        self.column_eq(&format!("json_extract(doc, '$.{path}')"), value);
    }

    /// `value` equals any of `paths`.
    fn eq_any_path(&mut self, paths: &[&str], value: impl ToString) {
        self.values.push(Value::Text(value.to_string()));
        let n = self.values.len();
        let any = paths
            .iter()
            .map(|p| format!("json_extract(doc, '$.{p}') = ?{n}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        self.clauses.push(format!("({any})"));
    }

    /// `path` is null or missing.
    fn is_null(&mut self, path: &str) {
        self.clauses
            .push(format!("json_extract(doc, '$.{path}') IS NULL"));
    }

    /// `path` is a timestamp before `t` (null never is).
    fn before(&mut self, path: &str, t: DateTime<Utc>) {
        self.values.push(Value::Text(ts_bound(t)));
        self.clauses.push(format!(
            "json_extract(doc, '$.{path}') < ?{}",
            self.values.len()
        ));
    }

    /// `path` is a timestamp at or after `t` (null never is).
    fn at_or_after(&mut self, path: &str, t: DateTime<Utc>) {
        self.values.push(Value::Text(ts_bound(t)));
        self.clauses.push(format!(
            "json_extract(doc, '$.{path}') >= ?{}",
            self.values.len()
        ));
    }

    /// Case-insensitive substring of any of `paths`; `instr` takes the text literally.
    fn contains(&mut self, paths: &[&str], needle: &str) {
        self.values.push(Value::Text(needle.to_lowercase()));
        let n = self.values.len();
        let any = paths
            .iter()
            .map(|p| {
                format!("instr(unicode_lower(COALESCE(json_extract(doc, '$.{p}'), '')), ?{n}) > 0")
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        self.clauses.push(format!("({any})"));
    }

    fn any_of(&mut self, path: &str, values: impl IntoIterator<Item = String>) {
        self.column_any_of(&format!("json_extract(doc, '$.{path}')"), values);
    }

    /// `column` (an expression, or a plain column of `counts`) equals `value`.
    fn column_eq(&mut self, column: &str, value: impl ToString) {
        self.values.push(Value::Text(value.to_string()));
        self.clauses
            .push(format!("{column} = ?{}", self.values.len()));
    }

    /// `column` (an expression) is any of `values`.
    fn column_any_of(&mut self, column: &str, values: impl IntoIterator<Item = String>) {
        let start = self.values.len();
        self.values.extend(values.into_iter().map(Value::Text));
        let marks = (start + 1..=self.values.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.clauses.push(format!("{column} IN ({marks})"));
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// A record as its table's row holds it: the columns a read selects, and how they decode.
trait Stored: DeserializeOwned + Send + 'static {
    const COLUMNS: &'static str = "doc";

    fn from_row(row: &rusqlite::Row<'_>) -> StoreResult<Self> {
        decode(&row.get::<_, String>(0).map_err(unavailable)?)
    }
}

impl Stored for User {}
impl Stored for TransformProfile {}
impl Stored for Token {}
impl Stored for Unit {}
impl Stored for Idempotency {}

/// Fenced records read their revision and hold from the `rev` and `hold` columns.
macro_rules! stored_fenced {
    ($($record:ty),*) => {$(
        impl Stored for $record {
            const COLUMNS: &'static str = "doc, rev, hold";

            fn from_row(row: &rusqlite::Row<'_>) -> StoreResult<Self> {
                let mut record: Self = decode(&row.get::<_, String>(0).map_err(unavailable)?)?;
                let rev: i64 = row.get(1).map_err(unavailable)?;
                let rev = u64::try_from(rev)
                    .map_err(|_| StoreError::Corrupt(format!("negative revision {rev}")))?;
                record.set_revision(rev);
                let hold: Option<String> = row.get(2).map_err(unavailable)?;
                record.set_hold(hold.as_deref().map(decode).transpose()?);
                Ok(record)
            }
        }
    )*};
}
stored_fenced!(Media, TransformTask, PublisherTask, WebhookRecord, Delivery);

fn rev_value(revision: u64) -> StoreResult<Value> {
    i64::try_from(revision)
        .map(Value::Integer)
        .map_err(|_| StoreError::Corrupt(format!("revision {revision} out of range")))
}

fn hold_value(hold: Option<&Hold>) -> StoreResult<Value> {
    Ok(match hold {
        Some(hold) => Value::Text(encode(hold)?),
        None => Value::Null,
    })
}

/// Give the fenced tables of a file made before the fence the columns they lack (`rev` 0 and
/// no hold: every record as it was). In one immediate transaction, so two processes opening
/// the same old file cannot both add one.
fn add_fence_columns(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    for table in FENCED {
        for (column, declared) in FENCE_COLUMNS {
            let has: bool = tx
                .query_row(
                    "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )
                .map_err(unavailable)?;
            if !has {
                tx.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {declared}"
                ))
                .map_err(unavailable)?;
            }
        }
    }
    tx.commit().map_err(unavailable)
}

/// Keep `counts` (`tbl`, `user_id`, `status` → `n`) for the fenced tables with triggers, so
/// that it changes in the statement that changes a record, whoever writes (another
/// connection, another process on the file). A file without it gets it filled from its
/// records, in one immediate transaction, so two processes opening it cannot both.
fn add_counts(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let has: bool = tx
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'counts'",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    if !has {
        tx.execute_batch(
            "CREATE TABLE counts (
                 tbl TEXT NOT NULL,
                 user_id TEXT NOT NULL,
                 status TEXT NOT NULL,
                 n INTEGER NOT NULL,
                 PRIMARY KEY (tbl, user_id, status)
             ) WITHOUT ROWID;",
        )
        .map_err(unavailable)?;
        for table in FENCED {
            tx.execute_batch(&counting_triggers(table))
                .map_err(unavailable)?;
            let (user, status) = counted_keys("doc");
            tx.execute(
                &format!(
                    "INSERT INTO counts (tbl, user_id, status, n) \
                     SELECT ?1, {user}, {status}, COUNT(*) FROM {table} \
                     WHERE {user} IS NOT NULL AND {status} IS NOT NULL GROUP BY 2, 3"
                ),
                [table],
            )
            .map_err(unavailable)?;
        }
    }
    tx.commit().map_err(unavailable)
}

/// A record's owner and status in `doc` (the table's, or a trigger's `OLD.doc`/`NEW.doc`), as
/// the counters key them.
fn counted_keys(doc: &str) -> (String, String) {
    (
        format!("json_extract({doc}, '$.user_id')"),
        format!("json_extract({doc}, '$.status')"),
    )
}

/// The triggers keeping `table`'s counters: +1 for a new record, −1 for a deleted one, both
/// when an update changes its owner or status.
fn counting_triggers(table: &str) -> String {
    let (old_u, old_s) = counted_keys("OLD.doc");
    let (new_u, new_s) = counted_keys("NEW.doc");
    let up_new = format!(
        "INSERT INTO counts (tbl, user_id, status, n) \
         SELECT '{table}', {new_u}, {new_s}, 1 WHERE {new_u} IS NOT NULL AND {new_s} IS NOT NULL \
         ON CONFLICT (tbl, user_id, status) DO UPDATE SET n = n + 1;"
    );
    let down_old = format!(
        "UPDATE counts SET n = n - 1 WHERE tbl = '{table}' AND user_id = {old_u} AND status = {old_s};"
    );
    format!(
        "CREATE TRIGGER {table}_counted AFTER INSERT ON {table} BEGIN {up_new} END;
         CREATE TRIGGER {table}_uncounted AFTER DELETE ON {table} BEGIN {down_old} END;
         CREATE TRIGGER {table}_recounted AFTER UPDATE OF doc ON {table}
             WHEN {old_u} IS NOT {new_u} OR {old_s} IS NOT {new_s}
             BEGIN {down_old} {up_new} END;"
    )
}

/// A sort path from an allow-list, checked anyway since it is spliced into SQL.
fn json_path(path: &str) -> StoreResult<String> {
    if path
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
    {
        Ok(format!("$.{path}"))
    } else {
        Err(StoreError::Corrupt(format!("bad sort path {path}")))
    }
}

/// `t` as stored timestamps are written (RFC 3339, microseconds, `Z`), so that string order
/// is time order; sub-microsecond digits round up, so `stored < bound` iff `stored < t`
/// (and `stored >= bound` iff `stored >= t`).
fn ts_bound(t: DateTime<Utc>) -> String {
    let mut micros = t.timestamp_micros();
    if !t.timestamp_subsec_nanos().is_multiple_of(1000) {
        micros += 1;
    }
    DateTime::from_timestamp_micros(micros)
        .unwrap_or(t)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn encode<T: Serialize>(doc: &T) -> StoreResult<String> {
    serde_json::to_string(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(doc: &str) -> StoreResult<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn conflict_or(e: rusqlite::Error, unique: &'static str) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(unique),
        _ => unavailable(e),
    }
}

fn user_values(user: &UserRecord) -> Vec<Value> {
    vec![
        Value::Text(user.user.id.to_string()),
        Value::Text(user.user.mail.to_lowercase()),
        Value::Text(user.secret_hash.clone()),
    ]
}

fn user_from_row(doc: &str, secret_hash: String) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        user: decode(doc)?,
        secret_hash,
    })
}

/// The conditions of a task list; `media_id` matches any of `media_paths`.
fn task_where(filter: &TaskFilter, media_paths: &[&str]) -> Where {
    let mut w = Where::default();
    if let Some(user_id) = filter.user_id {
        w.eq("user_id", user_id);
    }
    if let Some(media_id) = filter.media_id {
        w.eq_any_path(media_paths, media_id);
    }
    if !filter.statuses.is_empty() {
        w.any_of(
            "status",
            filter.statuses.iter().map(|s| s.as_str().to_owned()),
        );
    }
    if let Some(queue) = &filter.queue {
        w.eq("queue", queue);
    }
    if let Some(unit_id) = &filter.unit_id {
        w.eq("unit_id", unit_id);
    }
    if filter.undispatched {
        w.is_null("dispatched_at");
    }
    if let Some(t) = filter.lease_expired_before {
        w.before("lease_expires_at", t);
    }
    if let Some(t) = filter.finished_after {
        w.at_or_after("finished_at", t);
    }
    w
}

/// The counters that total `filter` on `table` ([`add_counts`]), when it filters by owner
/// and statuses only (a user's page, a queue's `status=PENDING` page); None when it filters
/// by anything else, which is counted from the table.
fn counted(table: &str, filter: &TaskFilter) -> Option<Where> {
    let TaskFilter {
        user_id,
        media_id: None,
        statuses,
        queue: None,
        unit_id: None,
        undispatched: false,
        lease_expired_before: None,
        finished_after: None,
    } = filter
    else {
        return None;
    };
    let mut w = Where::default();
    w.column_eq("tbl", table);
    if let Some(user_id) = user_id {
        w.column_eq("user_id", user_id);
    }
    if !statuses.is_empty() {
        w.column_any_of("status", statuses.iter().map(|s| s.as_str().to_owned()));
    }
    Some(w)
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable))
            .await
    }

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        self.put_doc(
            "INSERT INTO users (id, mail_key, secret_hash, doc) VALUES (?1, ?2, ?3, ?4)",
            user_values(user),
            &user.user,
            "mail",
        )
        .await
        .map(drop)
    }

    async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        self.user_where("id", id.to_string()).await
    }

    async fn user_by_mail(&self, mail: &str) -> StoreResult<Option<UserRecord>> {
        self.user_where("mail_key", mail.to_lowercase()).await
    }

    async fn list_users(&self, filter: &UserFilter, opts: &ListOptions) -> StoreResult<Page<User>> {
        let mut w = Where::default();
        if let Some(q) = &filter.q {
            w.contains(&["mail", "name"], q);
        }
        if let Some(id) = filter.id {
            w.eq("id", id);
        }
        self.list("users", w, opts).await
    }

    async fn update_user(&self, user: &UserRecord) -> StoreResult<bool> {
        let mut values = user_values(user);
        values.rotate_left(1); // id goes last
        self.put_doc(
            "UPDATE users SET mail_key = ?1, secret_hash = ?2, doc = ?4 WHERE id = ?3",
            values,
            &user.user,
            "mail",
        )
        .await
        .map(|n| n > 0)
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        self.delete("users", id.to_string()).await
    }

    async fn create_media(&self, media: &Media) -> StoreResult<()> {
        self.insert_fenced("medias", media.id, media).await
    }

    async fn get_media(&self, id: Uuid) -> StoreResult<Option<Media>> {
        self.get_doc("medias", "id", id.to_string()).await
    }

    async fn list_medias(
        &self,
        filter: &MediaFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<Media>> {
        let mut w = Where::default();
        if let Some(user_id) = filter.user_id {
            w.eq("user_id", user_id);
        }
        if let Some(parent_id) = filter.parent_id {
            w.eq("parent_id", parent_id);
        }
        w.any_of(
            "status",
            filter.statuses.iter().map(|s| s.as_str().to_owned()),
        );
        if let Some(q) = &filter.q {
            w.contains(&["metadata.title"], q);
        }
        self.list("medias", w, opts).await
    }

    async fn update_media(&self, media: &mut Media) -> StoreResult<bool> {
        let id = media.id;
        self.replace_fenced("medias", id, media).await
    }

    async fn create_profile(&self, profile: &TransformProfile) -> StoreResult<()> {
        self.put_doc(
            "INSERT INTO profiles (id, title, doc) VALUES (?1, ?2, ?3)",
            vec![
                Value::Text(profile.id.to_string()),
                Value::Text(profile.title.clone()),
            ],
            profile,
            "title",
        )
        .await
        .map(drop)
    }

    async fn get_profile(&self, id: Uuid) -> StoreResult<Option<TransformProfile>> {
        self.get_doc("profiles", "id", id.to_string()).await
    }

    async fn list_profiles(
        &self,
        filter: &ProfileFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<TransformProfile>> {
        let mut w = Where::default();
        if let Some(q) = &filter.q {
            w.contains(&["title"], q);
        }
        if let Some(encoder) = filter.encoder_name {
            w.eq("encoder_name", encoder);
        }
        if let Some(user_id) = filter.user_id {
            w.eq("user_id", user_id);
        }
        self.list("profiles", w, opts).await
    }

    async fn update_profile(&self, profile: &TransformProfile) -> StoreResult<bool> {
        self.put_doc(
            "UPDATE profiles SET title = ?2, doc = ?3 WHERE id = ?1",
            vec![
                Value::Text(profile.id.to_string()),
                Value::Text(profile.title.clone()),
            ],
            profile,
            "title",
        )
        .await
        .map(|n| n > 0)
    }

    async fn delete_profile(&self, id: Uuid) -> StoreResult<bool> {
        self.delete("profiles", id.to_string()).await
    }

    async fn create_token(&self, token: &Token) -> StoreResult<()> {
        self.put_doc(
            "INSERT INTO tokens (hash, doc) VALUES (?1, ?2)",
            vec![Value::Text(token.hash.clone())],
            token,
            "token",
        )
        .await
        .map(drop)
    }

    async fn get_token(&self, hash: &str) -> StoreResult<Option<Token>> {
        self.get_doc("tokens", "hash", hash.to_owned()).await
    }

    async fn delete_token(&self, hash: &str) -> StoreResult<bool> {
        let hash = hash.to_owned();
        self.with(move |c| {
            c.execute("DELETE FROM tokens WHERE hash = ?1", [hash])
                .map(|n| n > 0)
                .map_err(unavailable)
        })
        .await
    }

    async fn delete_expired_tokens(&self, t: DateTime<Utc>) -> StoreResult<u64> {
        self.delete_expired("tokens", t).await
    }

    async fn delete_user_tokens(&self, user_id: Uuid) -> StoreResult<u64> {
        self.with(move |c| {
            c.execute(
                "DELETE FROM tokens WHERE json_extract(doc, '$.user_id') = ?1",
                [user_id.to_string()],
            )
            .map(|n| n as u64)
            .map_err(unavailable)
        })
        .await
    }

    async fn create_transform_task(&self, task: &TransformTask) -> StoreResult<()> {
        self.insert_fenced("transform_tasks", task.header.id, task)
            .await
    }

    async fn get_transform_task(&self, id: Uuid) -> StoreResult<Option<TransformTask>> {
        self.get_doc("transform_tasks", "id", id.to_string()).await
    }

    async fn list_transform_tasks(
        &self,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<TransformTask>> {
        let w = task_where(filter, &["media_in_id", "media_out_id"]);
        let counters = counted("transform_tasks", filter);
        self.list_counted("transform_tasks", w, counters, opts)
            .await
    }

    async fn update_transform_task(&self, task: &mut TransformTask) -> StoreResult<bool> {
        let id = task.header.id;
        self.replace_fenced("transform_tasks", id, task).await
    }

    async fn create_publisher_task(&self, task: &PublisherTask) -> StoreResult<()> {
        self.insert_fenced("publisher_tasks", task.header.id, task)
            .await
    }

    async fn get_publisher_task(&self, id: Uuid) -> StoreResult<Option<PublisherTask>> {
        self.get_doc("publisher_tasks", "id", id.to_string()).await
    }

    async fn list_publisher_tasks(
        &self,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<PublisherTask>> {
        let w = task_where(filter, &["media_id"]);
        let counters = counted("publisher_tasks", filter);
        self.list_counted("publisher_tasks", w, counters, opts)
            .await
    }

    async fn update_publisher_task(&self, task: &mut PublisherTask) -> StoreResult<bool> {
        let id = task.header.id;
        self.replace_fenced("publisher_tasks", id, task).await
    }

    async fn count_by_status(
        &self,
        counted: Counted,
        user_id: Option<Uuid>,
    ) -> StoreResult<BTreeMap<String, u64>> {
        let table = match counted {
            Counted::Medias => "medias",
            Counted::TransformTasks => "transform_tasks",
            Counted::PublisherTasks => "publisher_tasks",
        };
        let mut w = Where::default();
        w.column_eq("tbl", table);
        if let Some(user_id) = user_id {
            w.column_eq("user_id", user_id);
        }
        self.with(move |c| {
            let sql = format!(
                "SELECT status, SUM(n) FROM counts {} GROUP BY 1 HAVING SUM(n) > 0",
                w.sql()
            );
            let mut stmt = c.prepare(&sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(params_from_iter(w.values.iter()), |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            Ok(rows
                .into_iter()
                .filter_map(|(status, n)| Some((status?, u64::try_from(n).unwrap_or(0))))
                .collect())
        })
        .await
    }

    async fn active_tasks(&self, kind: UnitKind) -> StoreResult<ActiveTasks> {
        let table = match kind {
            UnitKind::Transform => "transform_tasks",
            UnitKind::Publisher => "publisher_tasks",
        };
        let texts = |statuses: &[TaskStatus]| -> Vec<Value> {
            statuses
                .iter()
                .map(|s| Value::Text(s.as_str().to_owned()))
                .collect()
        };
        let (active, running) = (texts(&TaskStatus::ACTIVE), texts(&TaskStatus::RUNNING));
        self.with(move |c| {
            let marks = |n: usize| vec!["?"; n].join(", ");
            let sql = format!(
                "SELECT json_extract(doc, '$.queue'), json_extract(doc, '$.status'), COUNT(*), \
                 MIN(json_extract(doc, '$.created_at')) FROM {table} \
                 WHERE json_extract(doc, '$.status') IN ({}) GROUP BY 1, 2",
                marks(active.len())
            );
            let mut stmt = c.prepare(&sql).map_err(unavailable)?;
            let groups = stmt
                .query_map(params_from_iter(active.iter()), |r| {
                    Ok(TaskGroup {
                        queue: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                        status: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        oldest_created_at: r
                            .get::<_, Option<String>>(3)?
                            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                            .map(|t| t.with_timezone(&Utc)),
                    })
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            let sql = format!(
                "SELECT json_extract(doc, '$.unit_id'), COUNT(*) FROM {table} \
                 WHERE json_extract(doc, '$.status') IN ({}) GROUP BY 1",
                marks(running.len())
            );
            let mut stmt = c.prepare(&sql).map_err(unavailable)?;
            let running_by_unit = stmt
                .query_map(params_from_iter(running.iter()), |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?
                .into_iter()
                .filter_map(|(unit, n)| Some((unit?, u64::try_from(n).unwrap_or(0))))
                .collect();
            Ok(ActiveTasks {
                groups,
                running_by_unit,
            })
        })
        .await
    }

    async fn put_unit(&self, unit: &Unit) -> StoreResult<()> {
        self.put_doc(
            "INSERT INTO units (id, doc) VALUES (?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
            vec![Value::Text(unit.id.clone())],
            unit,
            "id",
        )
        .await
        .map(drop)
    }

    async fn get_unit(&self, id: &str) -> StoreResult<Option<Unit>> {
        self.get_doc("units", "id", id.to_owned()).await
    }

    async fn delete_unit(&self, id: &str) -> StoreResult<bool> {
        self.delete("units", id.to_owned()).await
    }

    async fn list_units(&self) -> StoreResult<Vec<Unit>> {
        let all = ListOptions {
            limit: u64::MAX,
            skip: 0,
            sort: "id",
            descending: false,
            uncounted: true,
        };
        Ok(self.list("units", Where::default(), &all).await?.items)
    }

    async fn root_secret_hash(&self) -> StoreResult<Option<String>> {
        self.with(|c| {
            c.query_row("SELECT hash FROM secrets WHERE name = 'root'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn insert_root_secret_hash(&self, hash: &str) -> StoreResult<bool> {
        let hash = hash.to_owned();
        self.with(move |c| {
            c.execute(
                "INSERT INTO secrets (name, hash) VALUES ('root', ?1) \
                 ON CONFLICT (name) DO NOTHING",
                params![hash],
            )
            .map(|inserted| inserted == 1)
            .map_err(unavailable)
        })
        .await
    }

    async fn set_root_secret_hash(&self, hash: &str) -> StoreResult<()> {
        let hash = hash.to_owned();
        self.with(move |c| {
            c.execute(
                "INSERT INTO secrets (name, hash) VALUES ('root', ?1) \
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash",
                params![hash],
            )
            .map(drop)
            .map_err(unavailable)
        })
        .await
    }

    async fn insert_idempotency(&self, record: &Idempotency) -> StoreResult<bool> {
        let inserted = self
            .put_doc(
                "INSERT INTO idempotency (id, doc) VALUES (?1, ?2)",
                vec![Value::Text(record.id.clone())],
                record,
                "idempotency key",
            )
            .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn get_idempotency(&self, id: &str) -> StoreResult<Option<Idempotency>> {
        self.get_doc("idempotency", "id", id.to_owned()).await
    }

    async fn finish_idempotency(&self, record: &Idempotency) -> StoreResult<bool> {
        self.put_doc(
            "UPDATE idempotency SET doc = ?3 WHERE id = ?1 AND json_extract(doc, '$.holder') = ?2",
            vec![
                Value::Text(record.id.clone()),
                Value::Text(record.holder.clone()),
            ],
            record,
            "idempotency key",
        )
        .await
        .map(|n| n > 0)
    }

    async fn delete_idempotency(&self, id: &str, holder: &str) -> StoreResult<bool> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.with(move |c| {
            c.execute(
                "DELETE FROM idempotency WHERE id = ?1 AND json_extract(doc, '$.holder') = ?2",
                params![id, holder],
            )
            .map(|n| n > 0)
            .map_err(unavailable)
        })
        .await
    }

    async fn delete_expired_idempotency(&self, t: DateTime<Utc>) -> StoreResult<u64> {
        self.delete_expired("idempotency", t).await
    }

    async fn create_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        self.insert_fenced("webhooks", webhook.webhook.id, webhook)
            .await
    }

    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
        self.get_doc("webhooks", "id", id.to_string()).await
    }

    async fn list_webhooks(
        &self,
        filter: &WebhookFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<WebhookRecord>> {
        let mut w = Where::default();
        if let Some(user_id) = filter.user_id {
            w.eq("user_id", user_id);
        }
        match filter.task_id {
            None => {}
            Some(None) => w.is_null("task_id"),
            Some(Some(task_id)) => w.eq("task_id", task_id),
        }
        if let Some(enabled) = filter.enabled {
            // JSON booleans read as 1 and 0.
            w.clauses.push(format!(
                "json_extract(doc, '$.enabled') = {}",
                i32::from(enabled)
            ));
        }
        self.list("webhooks", w, opts).await
    }

    async fn update_webhook(&self, webhook: &mut WebhookRecord) -> StoreResult<bool> {
        let id = webhook.webhook.id;
        self.replace_fenced("webhooks", id, webhook).await
    }

    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool> {
        let id = id.to_string();
        self.with(move |c| {
            c.execute(
                "DELETE FROM deliveries WHERE json_extract(doc, '$.webhook_id') = ?1",
                [&id],
            )
            .map_err(unavailable)?;
            c.execute("DELETE FROM webhooks WHERE id = ?1", [&id])
                .map(|n| n > 0)
                .map_err(unavailable)
        })
        .await
    }

    async fn create_delivery(&self, delivery: &Delivery) -> StoreResult<()> {
        self.insert_fenced("deliveries", delivery.id, delivery)
            .await
    }

    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<Delivery>> {
        self.get_doc("deliveries", "id", id.to_string()).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<Delivery>> {
        let mut w = Where::default();
        if let Some(webhook_id) = filter.webhook_id {
            w.eq("webhook_id", webhook_id);
        }
        if let Some(status) = filter.status {
            w.eq("status", status.as_str());
        }
        if let Some(t) = filter.due_before {
            w.eq("status", DeliveryStatus::Pending.as_str());
            w.before("next_at", t);
        }
        self.list("deliveries", w, opts).await
    }

    async fn update_delivery(&self, delivery: &mut Delivery) -> StoreResult<bool> {
        let id = delivery.id;
        self.replace_fenced("deliveries", id, delivery).await
    }

    async fn delete_expired_deliveries(&self, t: DateTime<Utc>) -> StoreResult<u64> {
        self.delete_expired("deliveries", t).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: chrono::Duration,
    ) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.with(move |c| {
            let now = Utc::now();
            let until = now
                .checked_add_signed(ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            // One statement: the insert of a free lease, or the take-over of a lapsed one
            // (or a renewal), decided under SQLite's write lock; 0 rows: someone else's.
            c.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE \
                 SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4",
                params![
                    name,
                    holder,
                    until.timestamp_micros(),
                    now.timestamp_micros()
                ],
            )
            .map(|n| n > 0)
            .map_err(unavailable)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.with(move |c| {
            c.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )
            .map(drop)
            .map_err(unavailable)
        })
        .await
    }
}

impl SqliteStore {
    async fn user_where(
        &self,
        column: &'static str,
        value: String,
    ) -> StoreResult<Option<UserRecord>> {
        self.with(move |c| {
            let row: Option<(String, String)> = c
                .query_row(
                    &format!("SELECT doc, secret_hash FROM users WHERE {column} = ?1"),
                    params![value],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(doc, hash)| user_from_row(&doc, hash)).transpose()
        })
        .await
    }
}
