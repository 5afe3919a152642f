//! Queue names: the kind's default queue or a named one (`OSCIED_QUEUES`, a task's `queue`).
//!
//! Queues are kind-scoped, because a job that reaches a unit of the other kind can never run
//! there: a transform task goes only to a transform queue, a publication only to a publisher
//! queue, and a unit consumes only its own kind's queues.
//!
//! - `transform` and names starting with `transform-`, `transform.` or `transform_` are
//!   transform queues; `publisher` and `publisher-…`, `publisher.…`, `publisher_…` are
//!   publisher queues ([`reserved_kind`]). Both are checked here, from the name alone, by the
//!   orchestra (task creation, heartbeats) and by the units at start.
//! - Any other valid name is a named queue of either kind (`gpu`, `cdn`): the first units that
//!   consume it decide, so the orchestra refuses a task for a named queue that units of the
//!   other kind consume (it knows them from their heartbeats).
//! - `unit@<id>` is a publisher unit's own queue ([`unit_queue`]): only the orchestra sends to
//!   it, never a client's task, and no unit names it in `OSCIED_QUEUES`.

use crate::node::UnitKind;

/// The queue transform tasks go to unless a task names another.
pub const TRANSFORM_QUEUE: &str = "transform";
/// The queue publisher tasks go to unless a task names another.
pub const PUBLISHER_QUEUE: &str = "publisher";

/// A publisher unit's own queue, which it consumes besides its kind's queues: unpublish jobs
/// for the publications it holds. The `@` keeps it out of the names clients may give tasks.
pub fn unit_queue(unit_id: &str) -> String {
    format!("unit@{unit_id}")
}

/// A queue name is 1–64 of `A-Z a-z 0-9 _ - .`: safe as an AMQP queue name, a log field and a
/// URL path segment.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    if name.starts_with("unit@") {
        return Err(format!(
            "{name:?} is a unit's own queue: only the orchestra sends to it"
        ));
    }
    if name.is_empty() || name.len() > 64 {
        return Err("a queue name has 1 to 64 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "a queue name may hold only letters, digits, '_', '-' and '.', not {c:?}"
        ));
    }
    if name.starts_with("amq.") {
        return Err("queue names starting with 'amq.' are reserved by AMQP".into());
    }
    Ok(())
}

/// The kind a queue name is reserved to: the kind's default queue and the names that start
/// with it and `-`, `.` or `_`. None for a named queue of either kind.
pub fn reserved_kind(name: &str) -> Option<UnitKind> {
    [UnitKind::Transform, UnitKind::Publisher]
        .into_iter()
        .find(|kind| match name.strip_prefix(default_queue(*kind)) {
            Some(rest) => rest.is_empty() || rest.starts_with(['-', '.', '_']),
            None => false,
        })
}

/// The queue a unit of this kind consumes, and a task of this kind goes to, unless named.
pub fn default_queue(kind: UnitKind) -> &'static str {
    match kind {
        UnitKind::Transform => TRANSFORM_QUEUE,
        UnitKind::Publisher => PUBLISHER_QUEUE,
    }
}

/// A valid name that is not reserved to the other kind: what a `kind` task may be sent to and
/// a `kind` unit may consume. The error names the queue and says why.
pub fn check_queue_for(kind: UnitKind, name: &str) -> Result<(), String> {
    check_queue_name(name)?;
    match reserved_kind(name) {
        Some(other) if other != kind => {
            let (kind, other) = (kind.as_str(), other.as_str());
            Err(format!(
                "{name:?} is a {other} queue; {kind} work goes to {kind} queues ({kind}, \
                 {kind}-… or a named queue such as \"gpu\")"
            ))
        }
        _ => Ok(()),
    }
}

/// Split `OSCIED_QUEUES` (`transform,gpu`) into checked names.
pub fn parse_queue_list(list: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err("name at least one queue".into());
    }
    for n in &names {
        check_queue_name(n)?;
    }
    Ok(names)
}

/// `OSCIED_QUEUES` of a unit of this kind: checked names, none reserved to the other kind.
pub fn parse_unit_queues(kind: UnitKind, list: &str) -> Result<Vec<String>, String> {
    let names = parse_queue_list(list)?;
    check_unit_queues(kind, &names)?;
    Ok(names)
}

/// The queues a unit of this kind is configured with (by flags or in-process): the error says
/// which one belongs to the other kind.
pub fn check_unit_queues(kind: UnitKind, queues: &[String]) -> Result<(), String> {
    for name in queues {
        check_queue_for(kind, name)
            .map_err(|e| format!("a {} unit cannot consume queue {e}", kind.as_str()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_queue_name("transform").is_ok());
        assert!(check_queue_name("gpu.fast-1_x").is_ok());
        assert!(check_queue_name("").is_err());
        assert!(check_queue_name("a b").is_err());
        assert!(check_queue_name("amq.gen").is_err());
        assert!(check_queue_name(&"x".repeat(65)).is_err());
        let own = check_queue_name(&unit_queue("u1")).unwrap_err();
        assert!(own.contains("a unit's own queue"), "{own}");
        assert_eq!(
            parse_queue_list(" transform, gpu ,").unwrap(),
            vec!["transform", "gpu"]
        );
        assert!(parse_queue_list(" , ").is_err());
    }

    #[test]
    fn queues_are_kind_scoped() {
        use UnitKind::{Publisher, Transform};
        for (name, kind) in [
            ("transform", Some(Transform)),
            ("transform-gpu", Some(Transform)),
            ("transform.eu", Some(Transform)),
            ("publisher", Some(Publisher)),
            ("publisher_cdn", Some(Publisher)),
            ("transformers", None),
            ("publishers", None),
            ("gpu", None),
            ("nobody", None),
        ] {
            assert_eq!(reserved_kind(name), kind, "{name}");
        }
        assert!(check_queue_for(Transform, "transform-gpu").is_ok());
        assert!(check_queue_for(Transform, "gpu").is_ok());
        assert!(check_queue_for(Publisher, "cdn").is_ok());
        assert!(check_queue_for(Publisher, "publisher-eu").is_ok());
        let err = check_queue_for(Transform, "publisher").unwrap_err();
        assert!(
            err.contains("\"publisher\" is a publisher queue; transform work goes to transform"),
            "{err}"
        );
        let err = check_queue_for(Publisher, "transform-gpu").unwrap_err();
        assert!(err.contains("is a transform queue"), "{err}");
        assert!(check_queue_for(Publisher, "unit@u1").is_err());
        assert_eq!(
            parse_unit_queues(Transform, "transform, gpu").unwrap(),
            vec!["transform", "gpu"]
        );
        let err = parse_unit_queues(Transform, "transform, publisher").unwrap_err();
        assert!(
            err.starts_with("a transform unit cannot consume queue \"publisher\""),
            "{err}"
        );
        assert!(parse_unit_queues(Publisher, "cdn,transform").is_err());
    }
}
