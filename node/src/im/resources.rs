//! [`ResourceMap`]: per-resource state of one user.

/// A map keyed by resource name. A user has a handful of sessions, so this is a sorted `Vec`
/// (one entry per session) rather than a B-tree (whose first node holds room for eleven);
/// iteration is in resource order, as with the B-tree it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMap<V> {
    entries: Vec<(String, V)>,
}

impl<V> Default for ResourceMap<V> {
    fn default() -> Self {
        ResourceMap {
            entries: Vec::new(),
        }
    }
}

impl<V> ResourceMap<V> {
    /// An empty map (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, resource: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(resource))
    }

    /// True when `resource` has an entry.
    pub fn contains_key(&self, resource: &str) -> bool {
        self.find(resource).is_ok()
    }

    /// The entry of `resource`.
    pub fn get(&self, resource: &str) -> Option<&V> {
        self.find(resource).ok().map(|i| &self.entries[i].1)
    }

    /// The entry of `resource`, mutable.
    pub fn get_mut(&mut self, resource: &str) -> Option<&mut V> {
        self.find(resource).ok().map(|i| &mut self.entries[i].1)
    }

    /// The entry of `resource`, created with `V::default()` when missing.
    pub fn get_or_default(&mut self, resource: &str) -> &mut V
    where
        V: Default,
    {
        let i = match self.find(resource) {
            Ok(i) => i,
            Err(i) => {
                self.entries.reserve_exact(1);
                self.entries.insert(i, (resource.to_string(), V::default()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Sets the entry of `resource`; returns the one it replaced.
    pub fn insert(&mut self, resource: String, value: V) -> Option<V> {
        match self.find(&resource) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                // Most users have one session: grow one entry at a time.
                self.entries.reserve_exact(1);
                self.entries.insert(i, (resource, value));
                None
            }
        }
    }

    /// Removes the entry of `resource`; the last removal releases the storage.
    pub fn remove(&mut self, resource: &str) -> Option<V> {
        let i = self.find(resource).ok()?;
        let (_, v) = self.entries.remove(i);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(v)
    }

    /// Entries in resource order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Resources in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `map["resource"]`, like the standard maps: panics when the entry is missing.
impl<V> std::ops::Index<&str> for ResourceMap<V> {
    type Output = V;

    fn index(&self, resource: &str) -> &V {
        match self.get(resource) {
            Some(v) => v,
            None => panic!("no entry for resource {resource:?}"),
        }
    }
}

impl<'a, V> IntoIterator for &'a ResourceMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, V)>,
        fn(&'a (String, V)) -> (&'a String, &'a V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::ResourceMap;

    #[test]
    fn behaves_like_an_ordered_map() {
        let mut m = ResourceMap::new();
        assert!(m.is_empty());
        assert_eq!(m.insert("phone".to_string(), 1), None);
        assert_eq!(m.insert("desk".to_string(), 2), None);
        assert_eq!(m.insert("phone".to_string(), 3), Some(1));
        *m.get_or_default("car") += 5;
        *m.get_or_default("desk") += 10;
        assert_eq!(
            m.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
            [("car", 5), ("desk", 12), ("phone", 3)]
        );
        assert!(m.contains_key("desk") && !m.contains_key("tablet"));
        assert_eq!(m.get("car"), Some(&5));
        *m.get_mut("car").unwrap() = 6;
        assert_eq!(m.remove("car"), Some(6));
        assert_eq!(m.remove("car"), None);
        assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["desk", "phone"]);
        assert_eq!((&m).into_iter().count(), m.len());
        m.remove("desk");
        m.remove("phone");
        assert!(
            m.is_empty() && m.entries.capacity() == 0,
            "storage released"
        );
    }
}
