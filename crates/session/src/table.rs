//! The session table: TSIH allocation and lookup of sessions by initiator, ISID and target
//! (RFC 7143 §4.4.3 session identifying parameters, §5.3.5 session reinstatement, §11.12.6
//! TSIH).
//!
//! The table holds no lock; an engine serving several threads wraps it in one (it is touched
//! only when a login completes or a session ends, never per I/O).

use std::collections::HashMap;

use rtgt_pdu::Isid;

/// What identifies a session for reinstatement: initiator name, ISID, target name (compared
/// case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    initiator: String,
    isid: Isid,
    target: String,
}

impl SessionKey {
    /// Builds the key (names are lower-cased: iSCSI names are case-insensitive, RFC 3722).
    pub fn new(initiator: &str, isid: Isid, target: &str) -> Self {
        Self {
            initiator: initiator.to_ascii_lowercase(),
            isid,
            target: target.to_ascii_lowercase(),
        }
    }
}

/// One registered session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry<V> {
    /// Identity.
    pub key: SessionKey,
    /// The engine's data (e.g. which reactor owns the session).
    pub value: V,
}

/// The table is full: all 65535 TSIHs are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no free TSIH")]
pub struct TableFull;

/// Sessions by TSIH and by identity.
///
/// ```
/// use rtgt_pdu::Isid;
/// use rtgt_session::table::{SessionKey, SessionTable};
///
/// let mut t = SessionTable::new();
/// let key = SessionKey::new("iqn.i", Isid([0x80, 0, 0, 0, 0, 1]), "iqn.t");
/// let tsih = t.insert(key.clone(), "reactor 0").unwrap();
/// assert_ne!(tsih, 0);
/// assert_eq!(t.find(&key), Some(tsih));
/// assert_eq!(t.get(tsih).unwrap().value, "reactor 0");
/// assert_eq!(t.remove(tsih).unwrap().value, "reactor 0");
/// assert_eq!(t.find(&key), None);
/// ```
#[derive(Debug, Clone)]
pub struct SessionTable<V> {
    by_tsih: HashMap<u16, SessionEntry<V>>,
    by_key: HashMap<SessionKey, u16>,
    next: u16,
}

impl<V> Default for SessionTable<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> SessionTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            by_tsih: HashMap::new(),
            by_key: HashMap::new(),
            next: 1,
        }
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.by_tsih.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_tsih.is_empty()
    }

    /// Registers a new session and returns its TSIH (never 0, not reused while in use). A
    /// session already registered under `key` must be removed first (reinstatement).
    pub fn insert(&mut self, key: SessionKey, value: V) -> Result<u16, TableFull> {
        if self.by_tsih.len() >= usize::from(u16::MAX) {
            return Err(TableFull);
        }
        loop {
            let tsih = self.next;
            self.next = self.next.wrapping_add(1).max(1);
            if tsih != 0 && !self.by_tsih.contains_key(&tsih) {
                self.by_key.insert(key.clone(), tsih);
                self.by_tsih.insert(tsih, SessionEntry { key, value });
                return Ok(tsih);
            }
        }
    }

    /// The session with TSIH `tsih`.
    pub fn get(&self, tsih: u16) -> Option<&SessionEntry<V>> {
        self.by_tsih.get(&tsih)
    }

    /// The session with TSIH `tsih`, mutably.
    pub fn get_mut(&mut self, tsih: u16) -> Option<&mut SessionEntry<V>> {
        self.by_tsih.get_mut(&tsih)
    }

    /// The TSIH of the session identified by `key`.
    pub fn find(&self, key: &SessionKey) -> Option<u16> {
        self.by_key.get(key).copied()
    }

    /// Removes a session.
    pub fn remove(&mut self, tsih: u16) -> Option<SessionEntry<V>> {
        let e = self.by_tsih.remove(&tsih)?;
        if self.by_key.get(&e.key) == Some(&tsih) {
            self.by_key.remove(&e.key);
        }
        Some(e)
    }

    /// All TSIHs (allocates).
    pub fn tsihs(&self) -> Vec<u16> {
        self.by_tsih.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsihs_are_unique_and_skip_zero() {
        let mut t = SessionTable::new();
        t.next = u16::MAX;
        let a = t
            .insert(SessionKey::new("a", Isid::default(), "t"), ())
            .unwrap();
        let b = t
            .insert(SessionKey::new("b", Isid::default(), "t"), ())
            .unwrap();
        assert_eq!(a, u16::MAX);
        assert_eq!(b, 1, "wraps past 0");
        t.next = u16::MAX;
        let c = t
            .insert(SessionKey::new("c", Isid::default(), "t"), ())
            .unwrap();
        assert_eq!(c, 2, "skips TSIHs in use");
    }

    #[test]
    fn identity_is_case_insensitive() {
        let mut t = SessionTable::new();
        let tsih = t
            .insert(SessionKey::new("IQN.A", Isid([1; 6]), "iqn.T"), 5)
            .unwrap();
        assert_eq!(
            t.find(&SessionKey::new("iqn.a", Isid([1; 6]), "IQN.t")),
            Some(tsih)
        );
        assert_eq!(
            t.find(&SessionKey::new("iqn.a", Isid([2; 6]), "iqn.t")),
            None
        );
        assert_eq!(t.len(), 1);
        t.get_mut(tsih).unwrap().value = 6;
        assert_eq!(t.remove(tsih).unwrap().value, 6);
        assert!(t.is_empty());
    }
}
