//! The cluster store: MongoDB through the `mongodb` crate (tests run it on NX-27017).
//!
//! One collection per record kind: `users`, `medias`, `profiles`, `tokens`, `transform_tasks`,
//! `publisher_tasks`, `units`, `secrets` (root's secret hash, `_id: "root"`), `leases` (the
//! background loops' leases: `_id` the name, `holder`, `expires_at` in Unix microseconds).
//! A document is the record's API JSON with `id` renamed `_id` (the UUID as a string; a
//! token's `_id` is its hash, a unit's its unit id). Users also carry `mail_key` (the
//! lowercased mail, unique) and `secret_hash`. Medias and tasks carry their fence
//! ([`Revised`]) in `_rev` (an Int64; a document written before the fence has none and reads
//! as revision 0): an update is one `replace_one({_id, _rev})` that stores `_rev + 1`. A
//! task's hold (a completion under way, [`Hold`]) rides beside it in `_hold`, its JSON as a
//! string, present only while held.
//!
//! Models go through `serde_json::Value`, never through bson's own serializer: that one is
//! not human-readable, so it would store UUIDs as binary and interpret extended-JSON keys
//! (`$oid`, `$date`...) inside free metadata. The conversion here is literal both ways:
//! JSON integers become Int32/Int64 (above `i64::MAX`, a Double), floats become Doubles.
//!
//! Portable queries only (they run on MongoDB and on NX-27017): `$regex` as a string with
//! `$options: "i"` (not a BSON regex value, which NX-27017 rejects), `$in`, `$or`,
//! `{"$eq": null}` (NX-27017's `count` gets a bare `null` match wrong), timestamps compared in
//! `$expr` (NX-27017 compares date-like strings at whole seconds elsewhere), sorts on
//! dotted paths with `_id` as the tiebreaker, and a `$match` + `$count` pipeline for totals
//! (what `count_documents` counts, without its `$group`, which NX-27017 runs in Python over
//! every match: half a second for a 10,000-task queue).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use oscied_protocol::TaskStatus;
use oscied_protocol::node::UnitKind;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Store, StoreError, StoreResult};
use crate::models::{
    ActiveTasks, Counted, Delivery, DeliveryFilter, DeliveryStatus, Hold, Idempotency, ListOptions,
    Media, MediaFilter, Page, ProfileFilter, PublisherTask, Revised, TaskFilter, TaskGroup, Token,
    TransformProfile, TransformTask, Unit, User, UserFilter, UserRecord, WebhookFilter,
    WebhookRecord,
};

/// The database when the URI names none.
const DEFAULT_DATABASE: &str = "oscied";
/// How long to look for a server before answering Unavailable, unless the URI says
/// otherwise (`serverSelectionTimeoutMS`, `connectTimeoutMS`). The driver's 30 s would
/// hang every request while the database is down.
const SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;
/// The field of a fenced document holding its revision.
const REV: &str = "_rev";
/// The field of a held task holding its [`Hold`].
const HOLD: &str = "_hold";

#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    users: Collection<Document>,
    medias: Collection<Document>,
    profiles: Collection<Document>,
    tokens: Collection<Document>,
    transform_tasks: Collection<Document>,
    publisher_tasks: Collection<Document>,
    units: Collection<Document>,
    /// `{_id: "root", hash}`: root's secret hash.
    secrets: Collection<Document>,
    /// `{_id: name, holder, expires_at}`: who runs the background loops.
    leases: Collection<Document>,
    /// Requests made with an `Idempotency-Key`, `_id` the digest of caller, route and key.
    idempotency: Collection<Document>,
    webhooks: Collection<Document>,
    /// One per event and webhook, with its attempts.
    deliveries: Collection<Document>,
}

impl MongoStore {
    /// Connect to `uri` (database: the URI's default database, else `oscied`) and create
    /// the indexes. Fails with Unavailable when no server answers within the selection
    /// timeout.
    pub async fn connect(uri: &str) -> StoreResult<MongoStore> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Unavailable(format!("invalid MongoDB URI: {e}")))?;
        options
            .server_selection_timeout
            .get_or_insert(SELECTION_TIMEOUT);
        options.connect_timeout.get_or_insert(SELECTION_TIMEOUT);
        options
            .app_name
            .get_or_insert_with(|| "oscied-orchestra".to_owned());
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let client = Client::with_options(options).map_err(unavailable)?;
        let db = client.database(&database);
        let store = MongoStore {
            users: db.collection("users"),
            medias: db.collection("medias"),
            profiles: db.collection("profiles"),
            tokens: db.collection("tokens"),
            transform_tasks: db.collection("transform_tasks"),
            publisher_tasks: db.collection("publisher_tasks"),
            units: db.collection("units"),
            secrets: db.collection("secrets"),
            leases: db.collection("leases"),
            idempotency: db.collection("idempotency"),
            webhooks: db.collection("webhooks"),
            deliveries: db.collection("deliveries"),
            client,
        };
        store.create_indexes().await?;
        Ok(store)
    }

    /// Idempotent: MongoDB accepts re-creating an index with the same keys and options.
    async fn create_indexes(&self) -> StoreResult<()> {
        self.users
            .create_index(unique_index(doc! { "mail_key": 1 }, "mail_key_unique"))
            .await
            .map_err(unavailable)?;
        self.profiles
            .create_index(unique_index(doc! { "title": 1 }, "title_unique"))
            .await
            .map_err(unavailable)?;
        let media_keys = [
            doc! { "user_id": 1 },
            doc! { "status": 1 },
            doc! { "parent_id": 1 },
            doc! { "created_at": 1 },
        ];
        for keys in media_keys {
            self.medias
                .create_index(IndexModel::builder().keys(keys).build())
                .await
                .map_err(unavailable)?;
        }
        // Task lookups (by status for dispatch and reaping, by owner, by media for the
        // "in use" checks, by queue, and the default order).
        let task_keys: [(&Collection<Document>, &[&str]); 2] = [
            (
                &self.transform_tasks,
                &[
                    "status",
                    "user_id",
                    "media_in_id",
                    "media_out_id",
                    "queue",
                    "created_at",
                ],
            ),
            (
                &self.publisher_tasks,
                &["status", "user_id", "media_id", "queue", "created_at"],
            ),
        ];
        for (coll, fields) in task_keys {
            for field in fields {
                coll.create_index(IndexModel::builder().keys(doc! { *field: 1 }).build())
                    .await
                    .map_err(unavailable)?;
            }
            // A queue's page (`status=PENDING`, oldest or newest first) walks the first in
            // order instead of sorting every match, and a user's page (every list but an
            // admin's) the third; the dispatch loop's undispatched scan finds its few
            // documents in the second.
            let compound = [
                doc! { "status": 1, "created_at": 1 },
                doc! { "status": 1, "dispatched_at": 1, "created_at": 1 },
                doc! { "user_id": 1, "status": 1, "created_at": 1 },
            ];
            for keys in compound {
                coll.create_index(IndexModel::builder().keys(keys).build())
                    .await
                    .map_err(unavailable)?;
            }
        }
        // Webhooks by owner and by task (the callbacks); deliveries by webhook (its list)
        // and the due ones (the sender's pass).
        let hook_keys = [
            (&self.webhooks, doc! { "user_id": 1 }),
            (&self.webhooks, doc! { "task_id": 1 }),
            (&self.deliveries, doc! { "webhook_id": 1, "created_at": 1 }),
            (&self.deliveries, doc! { "status": 1, "next_at": 1 }),
        ];
        for (coll, keys) in hook_keys {
            coll.create_index(IndexModel::builder().keys(keys).build())
                .await
                .map_err(unavailable)?;
        }
        // Tokens are found by `_id` (their hash), which is always indexed, and revoked by
        // owner.
        self.tokens
            .create_index(IndexModel::builder().keys(doc! { "user_id": 1 }).build())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// One page of `coll` matching `filter`, plus the total of all pages.
    async fn list<T: Stored>(
        &self,
        coll: &Collection<Document>,
        filter: Document,
        opts: &ListOptions,
        id_field: &str,
    ) -> StoreResult<Page<T>> {
        // The page, then the count only if the page does not tell the total. One after the
        // other, not side by side: NX-27017 runs each request on a thread that must take the
        // database's lock and Python's, and two at once cost more than both in turn (10,000
        // queued: 4.3 ms side by side, 3.2 ms in turn, measured with pymongo).
        let docs = find_page(coll, filter.clone(), opts).await?;
        let items = docs
            .into_iter()
            .map(|doc| T::from_stored(doc, id_field))
            .collect::<StoreResult<Vec<T>>>()?;
        let total = match opts.total_of_page(items.len()) {
            Some(total) => total,
            None => count(coll, filter).await?,
        };
        Ok(Page { items, total })
    }

    /// A task list; `media_id` matches any of `media_fields`.
    async fn list_tasks<T: Stored>(
        &self,
        coll: &Collection<Document>,
        filter: &TaskFilter,
        media_fields: &[&str],
        opts: &ListOptions,
    ) -> StoreResult<Page<T>> {
        if !opts.uncounted || filter.statuses.len() < 2 {
            let query = task_query(filter, media_fields);
            return self.list(coll, query, opts, "id").await;
        }
        // A background pass over several statuses (the reaper's running ones, the dispatch
        // loop's queued ones), one query per status, merged here: NX-27017 runs an `$in`
        // through `json_each` over every document (10,000 queued: 22 ms a pass), an
        // equality on its index (0.1 ms). Uncounted, so no total to add up.
        let each = ListOptions {
            skip: 0,
            limit: opts.skip.saturating_add(opts.limit),
            ..opts.clone()
        };
        let mut docs = Vec::new();
        for status in &filter.statuses {
            let one = TaskFilter {
                statuses: vec![*status],
                ..filter.clone()
            };
            docs.extend(find_page(coll, task_query(&one, media_fields), &each).await?);
        }
        let path = sort_path(opts.sort);
        docs.sort_by(|a, b| {
            let order = bson_order(a.get(path), b.get(path))
                .then_with(|| bson_order(a.get("_id"), b.get("_id")));
            if opts.descending {
                order.reverse()
            } else {
                order
            }
        });
        let skip = usize::try_from(opts.skip).unwrap_or(usize::MAX);
        let limit = usize::try_from(opts.limit).unwrap_or(usize::MAX);
        let items = docs
            .into_iter()
            .skip(skip)
            .take(limit)
            .map(|doc| T::from_stored(doc, "id"))
            .collect::<StoreResult<Vec<T>>>()?;
        Ok(Page {
            total: items.len() as u64,
            items,
        })
    }

    async fn get<T: Stored>(
        coll: &Collection<Document>,
        id: &str,
        id_field: &str,
    ) -> StoreResult<Option<T>> {
        coll.find_one(doc! { "_id": id })
            .await
            .map_err(unavailable)?
            .map(|doc| T::from_stored(doc, id_field))
            .transpose()
    }

    /// Insert one document; a duplicate key is a Conflict on `unique`.
    async fn insert(
        coll: &Collection<Document>,
        doc: Document,
        unique: &'static str,
    ) -> StoreResult<()> {
        coll.insert_one(doc)
            .await
            .map_err(|e| write_error(e, unique))?;
        Ok(())
    }

    /// Replace the whole document `_id`; false when it is gone.
    async fn replace(
        coll: &Collection<Document>,
        doc: Document,
        unique: &'static str,
    ) -> StoreResult<bool> {
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        let result = coll
            .replace_one(doc! { "_id": id }, doc)
            .await
            .map_err(|e| write_error(e, unique))?;
        Ok(result.matched_count > 0)
    }

    /// Insert the fenced `record` at its revision; a taken id is a Conflict.
    async fn insert_fenced<T: Serialize + Revised>(
        coll: &Collection<Document>,
        record: &T,
    ) -> StoreResult<()> {
        let mut doc = to_doc(record, "id")?;
        doc.insert(REV, rev_bson(record.revision())?);
        insert_hold(&mut doc, record.hold())?;
        Self::insert(coll, doc, "id").await
    }

    /// Replace the fenced `record` if its stored revision is still the record's, bumping it
    /// on both; false, writing nothing, when it is gone or changed underneath. The revision
    /// is in the filter of the one replace, so the check and the write cannot be split.
    async fn replace_fenced<T: Serialize + Revised>(
        coll: &Collection<Document>,
        record: &mut T,
    ) -> StoreResult<bool> {
        let revision = record.revision();
        let mut doc = to_doc(&*record, "id")?;
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        doc.insert(REV, rev_bson(revision.saturating_add(1))?);
        insert_hold(&mut doc, record.hold())?;
        let fence = if revision == 0 {
            // Written before the fence: no `_rev` at all is revision 0 too (`null` matches
            // a missing field). Not an `$or`: NX-27017 drops the `_id` beside one.
            doc! { "_id": id, REV: { "$in": [0_i64, Bson::Null] } }
        } else {
            doc! { "_id": id, REV: rev_bson(revision)? }
        };
        let result = coll
            .replace_one(fence, doc)
            .await
            .map_err(|e| write_error(e, "id"))?;
        let replaced = result.matched_count > 0;
        if replaced {
            record.set_revision(revision + 1);
        }
        Ok(replaced)
    }

    /// Remove every document whose `expires_at` is before `t`; how many there were. As for
    /// leases: `$expr` on the timestamp string (see `task_query`).
    async fn delete_expired(coll: &Collection<Document>, t: DateTime<Utc>) -> StoreResult<u64> {
        let query = doc! { "$and": [
            { "expires_at": { "$type": "string" } },
            { "$expr": { "$lt": ["$expires_at", ts_bound(t)] } },
        ] };
        let result = coll.delete_many(query).await.map_err(unavailable)?;
        Ok(result.deleted_count)
    }

    async fn delete(coll: &Collection<Document>, id: &str) -> StoreResult<bool> {
        let result = coll
            .delete_one(doc! { "_id": id })
            .await
            .map_err(unavailable)?;
        Ok(result.deleted_count > 0)
    }
}

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    fn counts_by_walking(&self) -> bool {
        true
    }

    async fn ping(&self) -> StoreResult<()> {
        self.client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        Self::insert(&self.users, user_doc(user)?, "mail").await
    }

    async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        self.users
            .find_one(doc! { "_id": id.to_string() })
            .await
            .map_err(unavailable)?
            .map(user_record)
            .transpose()
    }

    async fn user_by_mail(&self, mail: &str) -> StoreResult<Option<UserRecord>> {
        self.users
            .find_one(doc! { "mail_key": mail.to_lowercase() })
            .await
            .map_err(unavailable)?
            .map(user_record)
            .transpose()
    }

    async fn list_users(&self, filter: &UserFilter, opts: &ListOptions) -> StoreResult<Page<User>> {
        let mut query = Document::new();
        if let Some(id) = filter.id {
            query.insert("_id", id.to_string());
        }
        if let Some(q) = non_empty(&filter.q) {
            query.insert(
                "$or",
                vec![
                    Bson::Document(doc! { "mail": contains(q) }),
                    Bson::Document(doc! { "name": contains(q) }),
                ],
            );
        }
        self.list(&self.users, query, opts, "id").await
    }

    async fn update_user(&self, user: &UserRecord) -> StoreResult<bool> {
        Self::replace(&self.users, user_doc(user)?, "mail").await
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        Self::delete(&self.users, &id.to_string()).await
    }

    async fn create_media(&self, media: &Media) -> StoreResult<()> {
        Self::insert_fenced(&self.medias, media).await
    }

    async fn get_media(&self, id: Uuid) -> StoreResult<Option<Media>> {
        Self::get(&self.medias, &id.to_string(), "id").await
    }

    async fn list_medias(
        &self,
        filter: &MediaFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<Media>> {
        let mut query = Document::new();
        if let Some(user_id) = filter.user_id {
            query.insert("user_id", user_id.to_string());
        }
        if let Some(parent_id) = filter.parent_id {
            query.insert("parent_id", parent_id.to_string());
        }
        // Any of the statuses; none matches nothing (as SQL's `IN ()`).
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query.insert("status", doc! { "$in": statuses });
        if let Some(q) = non_empty(&filter.q) {
            query.insert("metadata.title", contains(q));
        }
        self.list(&self.medias, query, opts, "id").await
    }

    async fn update_media(&self, media: &mut Media) -> StoreResult<bool> {
        Self::replace_fenced(&self.medias, media).await
    }

    async fn create_profile(&self, profile: &TransformProfile) -> StoreResult<()> {
        Self::insert(&self.profiles, to_doc(profile, "id")?, "title").await
    }

    async fn get_profile(&self, id: Uuid) -> StoreResult<Option<TransformProfile>> {
        Self::get(&self.profiles, &id.to_string(), "id").await
    }

    async fn list_profiles(
        &self,
        filter: &ProfileFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<TransformProfile>> {
        let mut query = Document::new();
        if let Some(encoder) = filter.encoder_name {
            query.insert("encoder_name", encoder.as_str());
        }
        if let Some(user_id) = filter.user_id {
            query.insert("user_id", user_id.to_string());
        }
        if let Some(q) = non_empty(&filter.q) {
            query.insert("title", contains(q));
        }
        self.list(&self.profiles, query, opts, "id").await
    }

    async fn update_profile(&self, profile: &TransformProfile) -> StoreResult<bool> {
        Self::replace(&self.profiles, to_doc(profile, "id")?, "title").await
    }

    async fn delete_profile(&self, id: Uuid) -> StoreResult<bool> {
        Self::delete(&self.profiles, &id.to_string()).await
    }

    async fn create_token(&self, token: &Token) -> StoreResult<()> {
        Self::insert(&self.tokens, to_doc(token, "hash")?, "hash").await
    }

    async fn get_token(&self, hash: &str) -> StoreResult<Option<Token>> {
        Self::get(&self.tokens, hash, "hash").await
    }

    async fn delete_token(&self, hash: &str) -> StoreResult<bool> {
        Self::delete(&self.tokens, hash).await
    }

    async fn delete_expired_tokens(&self, t: DateTime<Utc>) -> StoreResult<u64> {
        Self::delete_expired(&self.tokens, t).await
    }

    async fn delete_user_tokens(&self, user_id: Uuid) -> StoreResult<u64> {
        let result = self
            .tokens
            .delete_many(doc! { "user_id": user_id.to_string() })
            .await
            .map_err(unavailable)?;
        Ok(result.deleted_count)
    }

    async fn create_transform_task(&self, task: &TransformTask) -> StoreResult<()> {
        Self::insert_fenced(&self.transform_tasks, task).await
    }

    async fn get_transform_task(&self, id: Uuid) -> StoreResult<Option<TransformTask>> {
        Self::get(&self.transform_tasks, &id.to_string(), "id").await
    }

    async fn list_transform_tasks(
        &self,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<TransformTask>> {
        let media_fields = ["media_in_id", "media_out_id"];
        self.list_tasks(&self.transform_tasks, filter, &media_fields, opts)
            .await
    }

    async fn update_transform_task(&self, task: &mut TransformTask) -> StoreResult<bool> {
        Self::replace_fenced(&self.transform_tasks, task).await
    }

    async fn create_publisher_task(&self, task: &PublisherTask) -> StoreResult<()> {
        Self::insert_fenced(&self.publisher_tasks, task).await
    }

    async fn get_publisher_task(&self, id: Uuid) -> StoreResult<Option<PublisherTask>> {
        Self::get(&self.publisher_tasks, &id.to_string(), "id").await
    }

    async fn list_publisher_tasks(
        &self,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<PublisherTask>> {
        self.list_tasks(&self.publisher_tasks, filter, &["media_id"], opts)
            .await
    }

    async fn update_publisher_task(&self, task: &mut PublisherTask) -> StoreResult<bool> {
        Self::replace_fenced(&self.publisher_tasks, task).await
    }

    async fn put_unit(&self, unit: &Unit) -> StoreResult<()> {
        self.units
            .replace_one(doc! { "_id": &unit.id }, to_doc(unit, "id")?)
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_unit(&self, id: &str) -> StoreResult<Option<Unit>> {
        Self::get(&self.units, id, "id").await
    }

    async fn delete_unit(&self, id: &str) -> StoreResult<bool> {
        Self::delete(&self.units, id).await
    }

    async fn list_units(&self) -> StoreResult<Vec<Unit>> {
        let all = ListOptions {
            limit: u64::MAX,
            skip: 0,
            sort: "id",
            descending: false,
            uncounted: true,
        };
        Ok(self
            .list(&self.units, Document::new(), &all, "id")
            .await?
            .items)
    }

    async fn count_by_status(
        &self,
        counted: Counted,
        user_id: Option<Uuid>,
    ) -> StoreResult<BTreeMap<String, u64>> {
        let coll = match counted {
            Counted::Medias => &self.medias,
            Counted::TransformTasks => &self.transform_tasks,
            Counted::PublisherTasks => &self.publisher_tasks,
        };
        let mut matching = Document::new();
        if let Some(user_id) = user_id {
            matching.insert("user_id", user_id.to_string());
        }
        let pipeline = [
            doc! { "$match": matching },
            doc! { "$group": { "_id": "$status", "n": { "$sum": 1 } } },
        ];
        let mut cursor = coll.aggregate(pipeline).await.map_err(unavailable)?;
        let mut counts = BTreeMap::new();
        while let Some(group) = cursor.try_next().await.map_err(unavailable)? {
            let Ok(status) = group.get_str("_id") else {
                continue;
            };
            let n = group_count(&group)?;
            counts.insert(status.to_owned(), n);
        }
        Ok(counts)
    }

    async fn active_tasks(&self, kind: UnitKind) -> StoreResult<ActiveTasks> {
        let coll = match kind {
            UnitKind::Transform => &self.transform_tasks,
            UnitKind::Publisher => &self.publisher_tasks,
        };
        // One `$group` on a single field per status: a group key of several fields is not
        // understood by every server speaking the protocol (NX-27017 takes it literally).
        let mut active = ActiveTasks::default();
        for status in TaskStatus::ACTIVE {
            let pipeline = [
                doc! { "$match": { "status": status.as_str() } },
                doc! { "$group": {
                    "_id": "$queue", "n": { "$sum": 1 }, "oldest": { "$min": "$created_at" },
                } },
            ];
            let mut cursor = coll.aggregate(pipeline).await.map_err(unavailable)?;
            while let Some(group) = cursor.try_next().await.map_err(unavailable)? {
                active.groups.push(TaskGroup {
                    queue: group.get_str("_id").unwrap_or_default().to_owned(),
                    status: status.as_str().to_owned(),
                    count: group_count(&group)?,
                    oldest_created_at: group
                        .get_str("oldest")
                        .ok()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc)),
                });
            }
        }
        let running: Vec<&str> = TaskStatus::RUNNING.iter().map(|s| s.as_str()).collect();
        let pipeline = [
            doc! { "$match": { "status": { "$in": running } } },
            doc! { "$group": { "_id": "$unit_id", "n": { "$sum": 1 } } },
        ];
        let mut cursor = coll.aggregate(pipeline).await.map_err(unavailable)?;
        while let Some(group) = cursor.try_next().await.map_err(unavailable)? {
            if let Ok(unit) = group.get_str("_id") {
                active
                    .running_by_unit
                    .insert(unit.to_owned(), group_count(&group)?);
            }
        }
        Ok(active)
    }

    async fn root_secret_hash(&self) -> StoreResult<Option<String>> {
        let doc = self
            .secrets
            .find_one(doc! { "_id": "root" })
            .await
            .map_err(unavailable)?;
        doc.map(|d| {
            d.get_str("hash")
                .map(str::to_owned)
                .map_err(|e| StoreError::Corrupt(format!("root secret: {e}")))
        })
        .transpose()
    }

    async fn insert_root_secret_hash(&self, hash: &str) -> StoreResult<bool> {
        // The unique _id makes the insert the conditional one.
        match Self::insert(&self.secrets, doc! { "_id": "root", "hash": hash }, "id").await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn set_root_secret_hash(&self, hash: &str) -> StoreResult<()> {
        self.secrets
            .replace_one(doc! { "_id": "root" }, doc! { "_id": "root", "hash": hash })
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_idempotency(&self, record: &Idempotency) -> StoreResult<bool> {
        // The unique `_id` lets one racer in.
        match Self::insert(&self.idempotency, to_doc(record, "id")?, "idempotency key").await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn get_idempotency(&self, id: &str) -> StoreResult<Option<Idempotency>> {
        Self::get(&self.idempotency, id, "id").await
    }

    async fn finish_idempotency(&self, record: &Idempotency) -> StoreResult<bool> {
        let result = self
            .idempotency
            .replace_one(
                doc! { "_id": &record.id, "holder": &record.holder },
                to_doc(record, "id")?,
            )
            .await
            .map_err(unavailable)?;
        Ok(result.matched_count > 0)
    }

    async fn delete_idempotency(&self, id: &str, holder: &str) -> StoreResult<bool> {
        let result = self
            .idempotency
            .delete_one(doc! { "_id": id, "holder": holder })
            .await
            .map_err(unavailable)?;
        Ok(result.deleted_count > 0)
    }

    async fn delete_expired_idempotency(&self, t: DateTime<Utc>) -> StoreResult<u64> {
        Self::delete_expired(&self.idempotency, t).await
    }

    async fn create_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        Self::insert_fenced(&self.webhooks, webhook).await
    }

    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
        Self::get(&self.webhooks, &id.to_string(), "id").await
    }

    async fn list_webhooks(
        &self,
        filter: &WebhookFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<WebhookRecord>> {
        let mut query = Document::new();
        if let Some(user_id) = filter.user_id {
            query.insert("user_id", user_id.to_string());
        }
        match filter.task_id {
            None => {}
            // An explicit `$eq`: NX-27017 matches a bare `null` wrong (see `task_query`).
            Some(None) => {
                query.insert("task_id", doc! { "$eq": Bson::Null });
            }
            Some(Some(task_id)) => {
                query.insert("task_id", task_id.to_string());
            }
        }
        if let Some(enabled) = filter.enabled {
            query.insert("enabled", enabled);
        }
        self.list(&self.webhooks, query, opts, "id").await
    }

    async fn update_webhook(&self, webhook: &mut WebhookRecord) -> StoreResult<bool> {
        Self::replace_fenced(&self.webhooks, webhook).await
    }

    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool> {
        let id = id.to_string();
        self.deliveries
            .delete_many(doc! { "webhook_id": &id })
            .await
            .map_err(unavailable)?;
        Self::delete(&self.webhooks, &id).await
    }

    async fn create_delivery(&self, delivery: &Delivery) -> StoreResult<()> {
        Self::insert_fenced(&self.deliveries, delivery).await
    }

    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<Delivery>> {
        Self::get(&self.deliveries, &id.to_string(), "id").await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<Delivery>> {
        let mut query = Document::new();
        if let Some(webhook_id) = filter.webhook_id {
            query.insert("webhook_id", webhook_id.to_string());
        }
        if let Some(status) = filter.status {
            query.insert("status", status.as_str());
        }
        if let Some(t) = filter.due_before {
            // The one-comparison form of `task_query`, which NX-27017 runs in SQL.
            query.insert("status", DeliveryStatus::Pending.as_str());
            query.insert("next_at", doc! { "$gt": "" });
            query.insert("$expr", doc! { "$lt": ["$next_at", ts_bound(t)] });
        }
        self.list(&self.deliveries, query, opts, "id").await
    }

    async fn update_delivery(&self, delivery: &mut Delivery) -> StoreResult<bool> {
        Self::replace_fenced(&self.deliveries, delivery).await
    }

    async fn delete_expired_deliveries(&self, t: DateTime<Utc>) -> StoreResult<u64> {
        Self::delete_expired(&self.deliveries, t).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: chrono::Duration,
    ) -> StoreResult<bool> {
        let now = Utc::now();
        let until = now
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            .timestamp_micros();
        // Three conditional writes, each atomic, tried in turn until one matches: renew our
        // own lease, take a lapsed one over, or insert a free one (the unique `_id` lets one
        // racer in). Of racers on a lapsed lease the first take-over moves `expires_at` past
        // the others' condition. Not one upsert with an `$or`: NX-27017 drops the `_id`
        // beside an `$or`, so it would take another name's lapsed lease.
        let set = doc! { "$set": { "holder": holder, "expires_at": until } };
        for mine in [
            doc! { "_id": name, "holder": holder },
            doc! { "_id": name, "expires_at": { "$lte": now.timestamp_micros() } },
        ] {
            let result = self
                .leases
                .update_one(mine, set.clone())
                .await
                .map_err(unavailable)?;
            if result.matched_count > 0 {
                return Ok(true);
            }
        }
        let free = doc! { "_id": name, "holder": holder, "expires_at": until };
        match Self::insert(&self.leases, free, "id").await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        self.leases
            .delete_one(doc! { "_id": name, "holder": holder })
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// The query of a task list; `media_id` matches any of `media_fields`.
fn task_query(filter: &TaskFilter, media_fields: &[&str]) -> Document {
    let mut query = Document::new();
    if let Some(user_id) = filter.user_id {
        query.insert("user_id", user_id.to_string());
    }
    if let Some(media_id) = filter.media_id {
        let media_id = media_id.to_string();
        let any: Vec<Bson> = media_fields
            .iter()
            .map(|field| Bson::Document(doc! { *field: &media_id }))
            .collect();
        query.insert("$or", any);
    }
    // Any of the statuses; none filters nothing. One is an equality, which NX-27017 counts
    // several times faster than an `$in` (a queue's page, `status=PENDING`).
    match filter.statuses.as_slice() {
        [] => {}
        [status] => {
            query.insert("status", status.as_str());
        }
        statuses => {
            let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
            query.insert("status", doc! { "$in": statuses });
        }
    }
    if let Some(queue) = &filter.queue {
        query.insert("queue", queue);
    }
    if let Some(unit_id) = &filter.unit_id {
        query.insert("unit_id", unit_id);
    }
    if filter.undispatched {
        // Null or missing. An explicit `$eq`: NX-27017 counts a bare `null` match wrong.
        query.insert("dispatched_at", doc! { "$eq": Bson::Null });
    }
    // Timestamps: a timestamp string compared with the bound; null and missing never match.
    // Through `$expr` because NX-27017 runs a plain `$lt` on a date-like string through
    // SQLite's datetime(), which drops the fraction of the second.
    let mut compared = Vec::new();
    if let Some(t) = filter.lease_expired_before {
        compared.push(("lease_expires_at", "$lt", t));
    }
    if let Some(t) = filter.finished_after {
        compared.push(("finished_at", "$gte", t));
    }
    match compared.as_slice() {
        [] => {}
        // One (the reaper's, the overview's) and no `$or`: `$gt: ""` keeps strings only, and
        // all stays at the top level, which NX-27017 runs in SQL; an `$and`, a `$type` or an
        // `$and` inside the `$expr` send it to Python over the whole collection (10,000
        // queued tasks: 200 ms a call instead of 25). Beside an `$or` it drops every other
        // condition, hence the slow form below then.
        [(field, op, t)] if !query.contains_key("$or") => {
            query.insert(*field, doc! { "$gt": "" });
            query.insert("$expr", doc! { *op: [format!("${field}"), ts_bound(*t)] });
        }
        // Inside an `$and`, since its find (not its count) drops other top-level conditions
        // beside `$type` + `$expr`.
        several => {
            let mut and = Vec::new();
            for (field, op, t) in several {
                and.push(Bson::Document(doc! { *field: { "$type": "string" } }));
                let cmp = doc! { *op: [format!("${field}"), ts_bound(*t)] };
                and.push(Bson::Document(doc! { "$expr": cmp }));
            }
            query.insert("$and", and);
        }
    }
    query
}

/// The documents of one page of `coll` matching `filter`, in the order of `opts`.
async fn find_page(
    coll: &Collection<Document>,
    filter: Document,
    opts: &ListOptions,
) -> StoreResult<Vec<Document>> {
    // A zero limit is an empty page (as SQL's LIMIT 0), not MongoDB's "no limit".
    if opts.limit == 0 {
        return Ok(Vec::new());
    }
    let direction = if opts.descending { -1 } else { 1 };
    let mut sort = Document::new();
    sort.insert(sort_path(opts.sort), direction);
    sort.insert("_id", direction);
    coll.find(filter)
        .sort(sort)
        .skip(opts.skip)
        .limit(i64::try_from(opts.limit).unwrap_or(i64::MAX))
        .await
        .map_err(unavailable)?
        .try_collect()
        .await
        .map_err(unavailable)
}

/// The document path of a list's sort key.
fn sort_path(sort: &'static str) -> &'static str {
    if sort == "id" { "_id" } else { sort }
}

/// MongoDB's order of the values a sort key holds: missing and null first, then numbers,
/// then strings (timestamps are strings here); other types tie.
fn bson_order(a: Option<&Bson>, b: Option<&Bson>) -> std::cmp::Ordering {
    fn rank(v: Option<&Bson>) -> (u8, f64, Option<&str>) {
        match v {
            None | Some(Bson::Null) => (0, 0.0, None),
            Some(Bson::Int32(n)) => (1, f64::from(*n), None),
            Some(Bson::Int64(n)) => (1, *n as f64, None),
            Some(Bson::Double(n)) => (1, *n, None),
            Some(Bson::String(s)) => (2, 0.0, Some(s.as_str())),
            Some(_) => (3, 0.0, None),
        }
    }
    let (a, b) = (rank(a), rank(b));
    a.0.cmp(&b.0)
        .then_with(|| a.1.total_cmp(&b.1))
        .then_with(|| a.2.cmp(&b.2))
}

/// How many documents of `coll` match `filter` (see the module's notes).
async fn count(coll: &Collection<Document>, filter: Document) -> StoreResult<u64> {
    let pipeline = [doc! { "$match": filter }, doc! { "$count": "n" }];
    let mut cursor = coll.aggregate(pipeline).await.map_err(unavailable)?;
    // No match, no document.
    let Some(counted) = cursor.try_next().await.map_err(unavailable)? else {
        return Ok(0);
    };
    match counted.get("n") {
        Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
        Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
    .ok_or_else(|| StoreError::Corrupt(format!("a bad count: {counted}")))
}

fn unique_index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .unique(true)
                .name(name.to_owned())
                .build(),
        )
        .build()
}

fn non_empty(q: &Option<String>) -> Option<&str> {
    q.as_deref().filter(|q| !q.is_empty())
}

/// A case-insensitive "contains `text`" condition, `text` taken literally.
fn contains(text: &str) -> Document {
    doc! { "$regex": escape_regex(text), "$options": "i" }
}

/// Escape the regex metacharacters of PCRE (MongoDB) and Python's `re` (NX-27017) alike.
/// Only ASCII punctuation is escaped: both engines read `\` + punctuation as the literal
/// character, while `\` + a letter or digit may mean something else.
fn escape_regex(text: &str) -> String {
    const REGEX_METACHARACTERS: &str = "\\^$.|?*+()[]{}-#/";
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if REGEX_METACHARACTERS.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn user_doc(user: &UserRecord) -> StoreResult<Document> {
    let mut doc = to_doc(&user.user, "id")?;
    doc.insert("mail_key", user.user.mail.to_lowercase());
    doc.insert("secret_hash", user.secret_hash.clone());
    Ok(doc)
}

fn user_record(mut doc: Document) -> StoreResult<UserRecord> {
    doc.remove("mail_key");
    let secret_hash = match doc.remove("secret_hash") {
        Some(Bson::String(hash)) => hash,
        _ => return Err(StoreError::Corrupt("a user without secret_hash".to_owned())),
    };
    Ok(UserRecord {
        user: from_doc(doc, "id")?,
        secret_hash,
    })
}

/// A record as its collection holds it: fenced ones read their revision from `_rev`.
trait Stored: DeserializeOwned {
    fn from_stored(doc: Document, id_field: &str) -> StoreResult<Self> {
        from_doc(doc, id_field)
    }
}

impl Stored for User {}
impl Stored for TransformProfile {}
impl Stored for Token {}
impl Stored for Unit {}
impl Stored for Idempotency {}

macro_rules! stored_fenced {
    ($($record:ty),*) => {$(
        impl Stored for $record {
            fn from_stored(mut doc: Document, id_field: &str) -> StoreResult<Self> {
                let revision = match doc.remove(REV) {
                    None => Some(0),
                    Some(Bson::Int64(n)) => u64::try_from(n).ok(),
                    Some(Bson::Int32(n)) => u64::try_from(n).ok(),
                    Some(_) => None,
                }
                .ok_or_else(|| StoreError::Corrupt(format!("a bad {REV} in {doc}")))?;
                let hold = match doc.remove(HOLD) {
                    None | Some(Bson::Null) => None,
                    Some(Bson::String(json)) => Some(
                        serde_json::from_str::<Hold>(&json)
                            .map_err(|e| StoreError::Corrupt(format!("a bad {HOLD}: {e}")))?,
                    ),
                    Some(other) => {
                        return Err(StoreError::Corrupt(format!("a bad {HOLD}: {other}")));
                    }
                };
                let mut record: Self = from_doc(doc, id_field)?;
                record.set_revision(revision);
                record.set_hold(hold);
                Ok(record)
            }
        }
    )*};
}
stored_fenced!(Media, TransformTask, PublisherTask, WebhookRecord, Delivery);

fn insert_hold(doc: &mut Document, hold: Option<&Hold>) -> StoreResult<()> {
    if let Some(hold) = hold {
        let json = serde_json::to_string(hold).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        doc.insert(HOLD, json);
    }
    Ok(())
}

fn rev_bson(revision: u64) -> StoreResult<Bson> {
    i64::try_from(revision)
        .map(Bson::Int64)
        .map_err(|_| StoreError::Corrupt(format!("revision {revision} out of range")))
}

/// A model as a document: its JSON, with `id_field` renamed `_id` (and put first).
fn to_doc<T: Serialize>(model: &T, id_field: &str) -> StoreResult<Document> {
    let value = serde_json::to_value(model).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(StoreError::Corrupt(
            "a record is not a JSON object".to_owned(),
        ));
    };
    let mut doc = Document::new();
    if let Some(id) = map.remove(id_field) {
        doc.insert("_id", json_to_bson(id));
    }
    for (key, value) in map {
        doc.insert(key, json_to_bson(value));
    }
    Ok(doc)
}

/// The reverse of [`to_doc`].
fn from_doc<T: DeserializeOwned>(mut doc: Document, id_field: &str) -> StoreResult<T> {
    let id = doc.remove("_id");
    let mut map = Map::new();
    if let Some(id) = id {
        map.insert(id_field.to_owned(), bson_to_json(id));
    }
    for (key, value) in doc {
        map.insert(key, bson_to_json(value));
    }
    let id = map.get(id_field).cloned().unwrap_or(Value::Null);
    serde_json::from_value(Value::Object(map))
        .map_err(|e| StoreError::Corrupt(format!("document {id}: {e}")))
}

fn json_to_bson(value: Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                match i32::try_from(i) {
                    Ok(i) => Bson::Int32(i),
                    Err(_) => Bson::Int64(i),
                }
            } else {
                // A float, or an integer above i64::MAX (BSON has no u64): a double.
                Bson::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Bson::String(s),
        Value::Array(a) => Bson::Array(a.into_iter().map(json_to_bson).collect()),
        Value::Object(o) => {
            Bson::Document(o.into_iter().map(|(k, v)| (k, json_to_bson(v))).collect())
        }
    }
}

fn bson_to_json(value: Bson) -> Value {
    match value {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::from(i),
        Bson::Int64(i) => Value::from(i),
        Bson::Double(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Bson::String(s) => Value::String(s),
        Bson::Array(a) => Value::Array(a.into_iter().map(bson_to_json).collect()),
        Bson::Document(d) => {
            Value::Object(d.into_iter().map(|(k, v)| (k, bson_to_json(v))).collect())
        }
        // Not written by this store; keep what a foreign writer put there readable.
        other => other.into_relaxed_extjson(),
    }
}

/// The driver's messages carry its whole topology; an API client needs the gist.
/// The `n` of a `$group`'s `{"$sum": 1}`, whichever number type the server answers.
fn group_count(group: &Document) -> StoreResult<u64> {
    match group.get("n") {
        Some(Bson::Int32(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
        Some(Bson::Int64(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
        Some(Bson::Double(n)) => Ok(*n as u64),
        _ => Err(StoreError::Corrupt(format!("a grouped count: {group}"))),
    }
}

fn unavailable(e: MongoError) -> StoreError {
    let message = match &*e.kind {
        ErrorKind::ServerSelection { .. } => {
            "no MongoDB server answered (server selection timed out)".to_owned()
        }
        _ => {
            let text = e.to_string();
            let gist = text.split(", labels:").next().unwrap_or(&text);
            gist.chars().take(300).collect()
        }
    };
    StoreError::Unavailable(message)
}

/// A duplicate key is a Conflict on `unique` when the message names that key's index
/// (MongoDB: `index: mail_key_unique dup key: ...`; NX-27017: `index 'idx_users_mail_key'`),
/// else on `id` (a duplicate `_id`).
fn write_error(e: MongoError, unique: &'static str) -> StoreError {
    let duplicate = match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY => {
            Some(w.message.clone())
        }
        ErrorKind::Command(c) if c.code == DUPLICATE_KEY => Some(c.message.clone()),
        _ => None,
    };
    match duplicate {
        Some(message) => {
            let index_key = match unique {
                "mail" => "mail_key",
                other => other,
            };
            if message.contains(index_key) {
                StoreError::Conflict(unique)
            } else {
                StoreError::Conflict("id")
            }
        }
        None => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_bson() {
        let value = serde_json::json!({
            "a": 1, "b": -5_000_000_000i64, "c": 2.5, "d": 1.0, "e": null, "f": [true, "x", {}],
            "g": {"$oid": "not an id", "$date": 3}, "h": u64::MAX,
        });
        let back = bson_to_json(json_to_bson(value.clone()));
        let mut expected = value;
        expected["h"] = serde_json::json!(u64::MAX as f64);
        assert_eq!(back, expected);
    }

    #[test]
    fn escapes_metacharacters() {
        assert_eq!(escape_regex("a.b*(c)"), r"a\.b\*\(c\)");
        assert_eq!(escape_regex(r"\d$^é"), r"\\d\$\^é");
    }
}
