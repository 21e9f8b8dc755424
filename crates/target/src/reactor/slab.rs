//! A minimal slab: stable indices, a free list, no allocation once warmed up.

/// Values addressed by small integer keys that stay valid until removed.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.items.get_mut(i) {
                *slot = Some(value);
                return i;
            }
        }
        self.items.push(Some(value));
        self.items.len() - 1
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let v = self.items.get_mut(key)?.take()?;
        self.free.push(key);
        self.len -= 1;
        Some(v)
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        self.items.get(key).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.items.get_mut(key).and_then(Option::as_mut)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys of all occupied entries (allocates; not for the per-I/O path).
    pub(crate) fn keys(&self) -> Vec<usize> {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| i)
            .collect()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.items
            .iter_mut()
            .enumerate()
            .filter_map(|(i, v)| v.as_mut().map(|v| (i, v)))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn keys_are_reused_after_removal() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        let c = s.insert("c");
        assert_eq!(c, a);
        assert_eq!(s.get(b), Some(&"b"));
        assert!(!s.is_empty());
        assert_eq!(s.keys(), vec![a, b]);
    }
}
