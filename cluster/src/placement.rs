//! Home-node placement: rendezvous (highest-random-weight) hashing of a user over the nodes, so
//! that when a node leaves only its own users move.

use sha2::{Digest, Sha256};

fn weight(user: &str, node: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0u8]);
    h.update(node.to_be_bytes());
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The home node of `user`: the pinned node when it is among `nodes`, else the node with the
/// highest weight. `None` when there are no nodes.
pub fn home_node(user: &str, pinned: u64, nodes: &[u64]) -> Option<u64> {
    if pinned != 0 && nodes.contains(&pinned) {
        return Some(pinned);
    }
    nodes.iter().copied().max_by_key(|n| (weight(user, *n), *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_minimal_movement() {
        let nodes = [1, 2, 3];
        let users: Vec<String> = (0..300).map(|i| format!("u{i}@example.test")).collect();
        let before: Vec<u64> = users
            .iter()
            .map(|u| home_node(u, 0, &nodes).unwrap())
            .collect();
        // Every node gets a fair share.
        for n in nodes {
            let c = before.iter().filter(|h| **h == n).count();
            assert!((60..=140).contains(&c), "node {n} got {c} of 300");
        }
        // Node 3 leaves: only its users move.
        for (u, b) in users.iter().zip(&before) {
            let after = home_node(u, 0, &[1, 2]).unwrap();
            if *b != 3 {
                assert_eq!(after, *b);
            }
        }
    }

    #[test]
    fn pinning_and_empty() {
        assert_eq!(home_node("a@b", 2, &[1, 2, 3]), Some(2));
        // A pin to a node that is gone falls back to hashing.
        assert!(home_node("a@b", 9, &[1, 2, 3]).is_some());
        assert_eq!(home_node("a@b", 0, &[]), None);
    }
}
