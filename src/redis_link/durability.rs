//! What an acknowledged write is worth: Redis's persistence settings, read with `CONFIG GET`.
//!
//! A key acknowledged by `/key/generate` must survive a crash of Redis too. That holds when Redis writes
//! its append-only file and fsyncs it before answering (`appendonly yes`, `appendfsync always`): the
//! gateway answers only after Redis did.

/// Redis's persistence, as it bears on an acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// `appendonly yes` and `appendfsync always`: on disk before Redis answers.
    OnDisk,
    /// Anything less; the text says what and how to fix it.
    Weaker(String),
    /// `CONFIG GET` is refused (managed Redis often renames it): the operator must check.
    Unknown,
}

pub(super) fn read(connection: &mut redis::Connection) -> redis::RedisResult<Durability> {
    let setting = |connection: &mut redis::Connection, name: &str| -> redis::RedisResult<Option<String>> {
        let pairs: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(connection)?;
        Ok(pairs.get(1).cloned())
    };
    let appendonly = match setting(connection, "appendonly") {
        Ok(value) => value,
        // Refused (renamed, or an ACL without the permission: NOPERM): the operator must check.
        Err(err) if matches!(err.kind(), redis::ErrorKind::Server(_)) => return Ok(Durability::Unknown),
        Err(err) => return Err(err),
    };
    let appendfsync = setting(connection, "appendfsync")?;
    // A Redis that evicts keys when full can drop the store itself (keys, the change counter).
    let (maxmemory, policy) = (setting(connection, "maxmemory")?, setting(connection, "maxmemory-policy")?);
    if maxmemory.as_deref().is_some_and(|bytes| bytes != "0") && policy.as_deref() != Some("noeviction") {
        return Ok(Durability::Weaker(format!(
            "maxmemory-policy is {} with a memory limit: Redis may evict the shared key store when full; set \
             `maxmemory-policy noeviction` (or give tiergate a Redis of its own)",
            policy.unwrap_or_default()
        )));
    }
    Ok(match (appendonly.as_deref(), appendfsync.as_deref()) {
        (Some("yes"), Some("always")) => Durability::OnDisk,
        (Some("yes"), fsync) => Durability::Weaker(format!(
            "appendfsync is {}: Redis may lose up to a second of acknowledged writes if it crashes; set \
             `appendfsync always`",
            fsync.unwrap_or("unset")
        )),
        _ => Durability::Weaker(
            "appendonly is off: Redis may lose every write since its last snapshot if it crashes; set \
             `appendonly yes` and `appendfsync always`"
                .into(),
        ),
    })
}
