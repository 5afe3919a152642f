//! The reconcile of a publisher's web root with what the orchestra says the unit holds (see
//! the crate docs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use oscied_protocol::TaskStatus;
use oscied_protocol::node::HeldPublication;
use oscied_protocol::unit::Unit;

use crate::handler::Publisher;
use crate::publish;

/// Keep in the web root only what the orchestra says is held, so nothing stays served that
/// an unpublish would not reach: a publication recorded as made by (unit, task, attempt)
/// stays iff that unit id holds that task at that attempt SUCCESS or REVOKING, or STARTED or
/// PROGRESS while it runs here right now. Every unit id found in the records is asked (its
/// own first): files made under an earlier id (its state dir lost) stay while that id holds
/// them. A publication without a record (made by an older version) stays iff its media is
/// held. When the orchestra cannot answer, nothing is removed: serving a stale copy for a
/// while is better than removing a held one.
///
/// Run before taking any job (nothing runs here then, so an attempt of ours still STARTED or
/// PROGRESS is a lost one), when a claim or a completion is refused, and every
/// `reconcile_secs`.
pub(crate) async fn reconcile(publisher: &Publisher, unit: &Unit, tries: u32) {
    let www = &publisher.www_root;
    let published = match publish::published_ids(www).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!("cannot list the web root: {e}");
            return;
        }
    };
    // Read before what runs here and what the orchestra says: a publication put in place
    // meanwhile is under another record, and its files are removed only if still this one's.
    let mut owned = Vec::with_capacity(published.len());
    for media in published {
        owned.push((media, publish::read_owner(www, media).await));
    }
    let running = unit.running.attempts();
    let mut unit_ids = vec![unit.spec.unit_id.clone()];
    for owner in owned.iter().filter_map(|(_, owner)| owner.as_ref()) {
        if !unit_ids.contains(&owner.unit_id) {
            unit_ids.push(owner.unit_id.clone());
        }
    }
    let mut held: HashMap<String, Vec<HeldPublication>> = HashMap::new();
    let mut held_medias = HashSet::new();
    for unit_id in &unit_ids {
        let mut answer = None;
        for try_ in 1..=tries.max(1) {
            match unit.link.client.held_publications(unit_id).await {
                Ok(held) => {
                    answer = Some(held);
                    break;
                }
                Err(e) => {
                    tracing::debug!(unit = %unit_id, "cannot list the publications held yet: {e}");
                    if try_ < tries {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        let Some(answer) = answer else {
            tracing::warn!(
                unit = %unit_id,
                "the orchestra could not say which publications are held; none removed"
            );
            return;
        };
        held_medias.extend(answer.media_ids);
        held.insert(unit_id.clone(), answer.publications);
    }
    for (media, owner) in owned {
        let keep = match &owner {
            Some(owner) => held.get(&owner.unit_id).is_some_and(|tasks| {
                tasks.iter().any(|p| {
                    p.task_id == owner.task_id
                        && p.attempt == owner.attempt
                        && match p.status {
                            TaskStatus::Success | TaskStatus::Revoking => true,
                            TaskStatus::Started | TaskStatus::Progress => {
                                owner.unit_id == unit.spec.unit_id
                                    && running.contains(&(owner.task_id, owner.attempt))
                            }
                            _ => false,
                        }
                })
            }),
            None => held_medias.contains(&media),
        };
        if keep {
            continue;
        }
        let removed = match &owner {
            Some(owner) => publish::unpublish_owned(www, media, &owner.staging_name()).await,
            None => publish::unpublish(www, media).await,
        };
        match removed {
            Ok(()) => tracing::info!(
                %media, made_by = ?owner, "removed a publication no unit of ours holds"
            ),
            Err(e) => tracing::warn!(
                %media, "cannot remove a publication no unit of ours holds: {e}"
            ),
        }
    }
}

/// The periodic reconcile, also run at once when a slot asks (a refused claim or
/// completion).
pub(crate) async fn reconcile_loop(publisher: Arc<Publisher>, unit: Arc<Unit>) {
    let every = Duration::from_secs(publisher.reconcile_secs.max(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = publisher.reconcile_now.notified() => {}
            () = unit.link.stopped() => return,
        }
        reconcile(&publisher, &unit, 1).await;
    }
}
