//! A change to the key store as data: the checks that must hold, the writes to make and the audit entries
//! that record it. The sled store applies one in a transaction; with Redis, the shared store commits it
//! first (checks included, atomically) and every replica's copy applies it from the change stream.

use std::time::SystemTime;

use super::audit::AuditEntry;
use super::store::Conflict;

/// The parts of the store a change writes (the audit trail aside). The numbers are what the change stream
/// and the commit script carry: fixed, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tree {
    Keys = 1,
    Aliases = 2,
    Grants = 3,
    Budgets = 4,
    Spend = 5,
    /// Models added at run time (`/model/new`), by id.
    Models = 6,
    /// End users (`/end_user/new`), by id.
    EndUsers = 7,
    /// Users, teams and organizations (`team:<id>`, `user:<id>`, `org:<id>`), as `keys/orgs` writes them.
    Entities = 8,
}

impl Tree {
    pub const ALL: [Tree; 8] = [
        Tree::Keys,
        Tree::Aliases,
        Tree::Grants,
        Tree::Budgets,
        Tree::Spend,
        Tree::Models,
        Tree::EndUsers,
        Tree::Entities,
    ];

    /// The tree's name: in sled, and (prefixed) as a Redis hash.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Keys => "keys",
            Tree::Aliases => "aliases",
            Tree::Grants => "grants",
            Tree::Budgets => "budgets",
            Tree::Spend => "spend",
            Tree::Models => "models",
            Tree::EndUsers => "end_users",
            Tree::Entities => "entities",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    fn of_code(code: u8) -> Option<Tree> {
        Tree::ALL.into_iter().find(|tree| tree.code() == code)
    }
}

/// Refuses the change with `conflict` unless `key` holds one of `allowed` in `tree`, or is absent from it
/// (unless `present`); `present` with nothing allowed: any value will do, as long as there is one.
#[derive(Debug, Clone)]
pub struct Check {
    pub tree: Tree,
    pub key: Vec<u8>,
    pub allowed: Vec<Vec<u8>>,
    pub present: bool,
    pub conflict: Conflict,
}

impl Check {
    /// Whether `current` (the value now, `None`: absent) lets the change through.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        match current {
            None => !self.present,
            Some(_) if self.present && self.allowed.is_empty() => true,
            Some(value) => self.allowed.iter().any(|allowed| allowed[..] == value[..]),
        }
    }
}

/// Sets `key` in `tree` to `value`, or removes it (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub tree: Tree,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Change {
    pub checks: Vec<Check>,
    pub writes: Vec<Write>,
    pub audit: Vec<AuditEntry>,
    pub at: SystemTime,
    /// Budgets a key is linked to by this change.
    pub links: Vec<Vec<u8>>,
    /// A budget this change deletes, found linked to no key in a copy that held every change up to the
    /// number given: refused if a key was linked to it after that change (on another replica, in Redis).
    /// One store alone needs no such check: its changes are made one at a time.
    pub unlinked: Option<(Vec<u8>, u64)>,
}

impl Change {
    pub fn new() -> Self {
        let (links, unlinked) = (Vec::new(), None);
        Self { checks: Vec::new(), writes: Vec::new(), audit: Vec::new(), at: SystemTime::now(), links, unlinked }
    }

    /// Links a key to budget `id`: refused with [`Conflict::BudgetGone`] unless it exists, and recorded so a
    /// delete of the budget computed before this change is refused.
    pub fn link_budget(&mut self, id: &str) {
        self.check_exists(Tree::Budgets, id.as_bytes(), Conflict::BudgetGone(id.to_owned()));
        self.links.push(id.as_bytes().to_vec());
    }

    /// Refuses the change unless `key` is absent from `tree` or holds one of `allowed`.
    pub fn check(&mut self, tree: Tree, key: &[u8], allowed: &[&[u8]], conflict: Conflict) {
        let allowed = allowed.iter().map(|value| value.to_vec()).collect();
        self.checks.push(Check { tree, key: key.to_vec(), allowed, present: false, conflict });
    }

    /// Refuses the change with `conflict` unless `key` is in `tree`, whatever its value.
    pub fn check_exists(&mut self, tree: Tree, key: &[u8], conflict: Conflict) {
        self.checks.push(Check { tree, key: key.to_vec(), allowed: Vec::new(), present: true, conflict });
    }

    /// Refuses the change unless `key` still holds exactly `read` in `tree` (nobody changed or removed it
    /// since it was read): a compare-and-set.
    pub fn check_unchanged(&mut self, tree: Tree, key: &[u8], read: &[u8]) {
        self.checks.push(Check {
            tree,
            key: key.to_vec(),
            allowed: vec![read.to_vec()],
            present: true,
            conflict: Conflict::ChangedMeanwhile,
        });
    }

    pub fn put(&mut self, tree: Tree, key: &[u8], value: Vec<u8>) {
        self.writes.push(Write { tree, key: key.to_vec(), value: Some(value) });
    }

    pub fn remove(&mut self, tree: Tree, key: &[u8]) {
        self.writes.push(Write { tree, key: key.to_vec(), value: None });
    }

    /// The writes as the change stream carries them: for each, the tree, the key and the value if any,
    /// each length-prefixed.
    pub fn encode_writes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for write in &self.writes {
            out.push(write.tree.code());
            put_bytes(&mut out, &write.key);
            match &write.value {
                Some(value) => {
                    out.push(1);
                    put_bytes(&mut out, value);
                }
                None => out.push(0),
            }
        }
        out
    }

    /// The audit entries as stored, each with id 0 (the store that applies them numbers them).
    pub fn encode_audit(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in &self.audit {
            put_bytes(&mut out, &entry.encode(0, self.at));
        }
        out
    }
}

/// Reads what [`Change::encode_writes`] wrote; `None` when damaged.
pub fn decode_writes(mut bytes: &[u8]) -> Option<Vec<Write>> {
    let mut writes = Vec::new();
    while let Some((&code, rest)) = bytes.split_first() {
        let tree = Tree::of_code(code)?;
        let (key, rest) = take_bytes(rest)?;
        let (&has_value, rest) = rest.split_first()?;
        let (value, rest) = match has_value {
            1 => take_bytes(rest).map(|(value, rest)| (Some(value.to_vec()), rest))?,
            0 => (None, rest),
            _ => return None,
        };
        writes.push(Write { tree, key: key.to_vec(), value });
        bytes = rest;
    }
    Some(writes)
}

/// Reads what [`Change::encode_audit`] wrote; `None` when damaged.
pub fn decode_audit(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let (entry, rest) = take_bytes(bytes)?;
        entries.push(entry);
        bytes = rest;
    }
    Some(entries)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_bytes(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = &bytes[4..];
    (rest.len() >= length).then(|| rest.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_entries_survive_the_stream_encoding_and_damage_is_refused() {
        let mut change = Change::new();
        change.put(Tree::Keys, b"k", b"value".to_vec());
        change.remove(Tree::Aliases, b"alias");
        change.put(Tree::Spend, b"", Vec::new());
        change.audit.push(AuditEntry::new("generate"));
        let encoded = change.encode_writes();
        assert_eq!(decode_writes(&encoded).unwrap(), change.writes);
        assert!(decode_writes(&encoded[..encoded.len() - 1]).is_none());
        let mut flipped = encoded.clone();
        flipped[1 + 4 + 1] = 7; // the first write's "has a value" byte: neither 0 nor 1 is damage, not a delete
        assert!(decode_writes(&flipped).is_none());
        assert!(decode_writes(&[9, 0, 0, 0, 0, 0]).is_none(), "an unknown tree");
        let entries = change.encode_audit();
        let decoded = decode_audit(&entries).unwrap();
        assert_eq!(decoded.len(), 1);
        assert!(std::str::from_utf8(decoded[0]).unwrap().contains("\"generate\""));
        assert!(decode_audit(&entries[..3]).is_none());
    }
}
