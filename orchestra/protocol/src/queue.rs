//! Queue names: the kind's default queue or a named one (`OSCIED_QUEUES`, a task's `queue`).

/// The queue transform tasks go to unless a task names another.
pub const TRANSFORM_QUEUE: &str = "transform";
/// The queue publisher tasks go to unless a task names another.
pub const PUBLISHER_QUEUE: &str = "publisher";

/// A queue name is 1–64 of `A-Z a-z 0-9 _ - .`: safe as an AMQP queue name, a log field and a
/// URL path segment.
/// A publisher unit's own queue, which it consumes besides its kind's queues: unpublish jobs
/// for the publications it holds. The `@` keeps it out of the names clients may give tasks.
pub fn unit_queue(unit_id: &str) -> String {
    format!("unit@{unit_id}")
}

pub fn check_queue_name(name: &str) -> Result<(), String> {
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
        assert_eq!(
            parse_queue_list(" transform, gpu ,").unwrap(),
            vec!["transform", "gpu"]
        );
        assert!(parse_queue_list(" , ").is_err());
    }
}
