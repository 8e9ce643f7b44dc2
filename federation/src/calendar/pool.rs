//! The gateway pool (CAL-8): which gateway reads a user's calendar.
//!
//! A user keeps the gateway they have while it is healthy (even one no longer eligible for new
//! users). A user without one, or whose gateway is unhealthy or gone, gets the eligible
//! healthy gateway with the fewest users; ties go round-robin from `cursor`, so that a burst of
//! new users spreads evenly. With no eligible healthy gateway a user keeps the gateway they
//! have (it is retried) or stays unassigned.

/// What the pool knows about one gateway of the right kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGateway {
    /// Its id.
    pub id: String,
    /// Takes new users (`calendar-gateway update --eligible`).
    pub eligible: bool,
    /// Its last check succeeded (reachable, certificate valid, authenticated), or it has not
    /// been checked yet.
    pub healthy: bool,
    /// Users assigned to it now.
    pub users: usize,
}

/// The gateway for a user currently on `current`; `cursor` advances on every tie broken.
pub fn choose(
    current: Option<&str>,
    gateways: &[PoolGateway],
    cursor: &mut usize,
) -> Option<String> {
    if let Some(cur) = current {
        if gateways.iter().any(|g| g.id == cur && g.healthy) {
            return Some(cur.to_owned());
        }
    }
    let candidates: Vec<&PoolGateway> = gateways
        .iter()
        .filter(|g| g.eligible && g.healthy)
        .collect();
    let fewest = candidates.iter().map(|g| g.users).min();
    let Some(fewest) = fewest else {
        // Nobody healthy: keep what exists (it is retried), else nothing.
        return current
            .filter(|c| gateways.iter().any(|g| g.id == *c))
            .map(str::to_owned);
    };
    let tied: Vec<&&PoolGateway> = candidates.iter().filter(|g| g.users == fewest).collect();
    let pick = tied[*cursor % tied.len()];
    *cursor = cursor.wrapping_add(1);
    Some(pick.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(id: &str, eligible: bool, healthy: bool, users: usize) -> PoolGateway {
        PoolGateway {
            id: id.into(),
            eligible,
            healthy,
            users,
        }
    }

    #[test]
    fn choice_table() {
        let pool = vec![
            gw("a", true, true, 3),
            gw("b", true, true, 1),
            gw("c", true, false, 0),
        ];
        type Row = (
            &'static str,
            Option<&'static str>,
            Vec<PoolGateway>,
            Option<&'static str>,
        );
        let rows: Vec<Row> = vec![
            (
                "keeps a healthy gateway",
                Some("a"),
                pool.clone(),
                Some("a"),
            ),
            (
                "new user: fewest users among healthy",
                None,
                pool.clone(),
                Some("b"),
            ),
            (
                "unhealthy gateway: moved",
                Some("c"),
                pool.clone(),
                Some("b"),
            ),
            (
                "removed gateway: moved",
                Some("zz"),
                pool.clone(),
                Some("b"),
            ),
            (
                "keeps a healthy gateway no longer eligible",
                Some("a"),
                vec![gw("a", false, true, 9), gw("b", true, true, 0)],
                Some("a"),
            ),
            (
                "not eligible: no new users",
                None,
                vec![gw("a", false, true, 0), gw("b", true, true, 5)],
                Some("b"),
            ),
            (
                "nobody healthy: keeps its own",
                Some("a"),
                vec![gw("a", true, false, 1), gw("b", true, false, 0)],
                Some("a"),
            ),
            (
                "nobody healthy, new user: none",
                None,
                vec![gw("a", true, false, 0)],
                None,
            ),
            ("no gateway at all", Some("a"), vec![], None),
        ];
        for (name, cur, pool, want) in rows {
            let mut cursor = 0;
            assert_eq!(choose(cur, &pool, &mut cursor).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn ties_go_round_robin_and_a_burst_spreads_evenly() {
        let mut pool = vec![
            gw("a", true, true, 0),
            gw("b", true, true, 0),
            gw("c", true, true, 0),
        ];
        let mut cursor = 0;
        for _ in 0..300 {
            let id = choose(None, &pool, &mut cursor).unwrap();
            pool.iter_mut().find(|g| g.id == id).unwrap().users += 1;
        }
        assert!(pool.iter().all(|g| g.users == 100), "{pool:?}");
        // One fails: its users move over the other two, evenly.
        pool[0].healthy = false;
        let moved: Vec<String> = (0..100)
            .map(|_| {
                let id = choose(Some("a"), &pool, &mut cursor).unwrap();
                pool.iter_mut().find(|g| g.id == id).unwrap().users += 1;
                id
            })
            .collect();
        assert_eq!(moved.iter().filter(|i| *i == "b").count(), 50);
        assert_eq!(moved.iter().filter(|i| *i == "c").count(), 50);
    }
}
