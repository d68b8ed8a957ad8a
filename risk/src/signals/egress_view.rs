//! How each tenant sees the members of one egress (`shared_egress`).
//!
//! A tenant counts the members tetherd itself observed plus its own, however they were placed
//! (see [`View`]). The observed part is the same for every tenant, so it is counted once per
//! sighting and each tenant adds only its own unobserved members: the same counts as filtering
//! all members once per tenant, without sorting and allocating per tenant (that was a quarter of
//! `tether analyze`'s time behind carrier NATs with many employers).

use super::egress::Member;
use crate::Millis;

/// The cluster as one tenant may be judged by it. Tenants are adversaries: another
/// tenant's gateway can report any address for its own devices, and its devices can claim
/// any LAN, so another tenant's members count only where tetherd itself observed them.
/// A tenant's own members count however they were placed: it can only frame itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct View {
    pub workers: usize,
    pub tenants: usize,
    pub members: usize,
    pub remote: usize,
    /// Workers and tenants whose counted devices live here: seen here on many days, (almost) only here.
    pub resident_workers: usize,
    pub resident_tenants: usize,
    /// Different LANs the counted members reported (or reported behind the address in the
    /// last week, whichever is more), and how many counted members reported one.
    pub lans: usize,
    pub lan_reporters: usize,
}

/// The observed members' distinct workers, residents and LANs, sorted for lookups. Tenants are
/// the first half of the sorted `(tenant, worker)` pairs, so they need no list of their own;
/// one pass and three lists per sighting (this runs on every sighting behind a shared address).
pub(crate) struct Views<'a> {
    members: &'a [Member],
    /// `remote[i]`: whether `members[i]` carries a remote-control flag.
    remote: &'a [bool],
    at: Millis,
    window: Millis,
    base: View,
    workers: Vec<(u32, u32)>,
    residents: Vec<(u32, u32)>,
    lans: Vec<u64>,
}

impl<'a> Views<'a> {
    pub(crate) fn new(members: &'a [Member], remote: &'a [bool], at: Millis, window: Millis) -> Self {
        let (mut workers, mut residents, mut lans) = (Vec::new(), Vec::new(), Vec::new());
        let mut base = View::default();
        for (m, r) in members.iter().zip(remote).filter(|(m, _)| m.observed_within(at, window)) {
            base.members += 1;
            base.remote += usize::from(*r);
            workers.push((m.tenant, m.worker));
            if m.resident {
                residents.push((m.tenant, m.worker));
            }
            if let Some(lan) = m.lan {
                base.lan_reporters += 1;
                lans.push(lan);
            }
        }
        base.workers = distinct(&mut workers);
        base.tenants = tenants_in(&workers);
        base.resident_workers = distinct(&mut residents);
        base.resident_tenants = tenants_in(&residents);
        base.lans = distinct(&mut lans);
        Self { members, remote, at, window, base, workers, residents, lans }
    }

    /// What tetherd itself observed: the view no tenant's own claims enter (probes start from it).
    pub(crate) fn observed(&self) -> View {
        self.base.clone()
    }

    /// `tenant`'s view; `own` lists the indices of its members.
    pub(crate) fn for_tenant(&self, tenant: u32, own: &[usize]) -> View {
        let mut view = self.base.clone();
        let (mut workers, mut residents, mut lans) = (Vec::new(), Vec::new(), Vec::new());
        let (mut any_own, mut any_resident) = (false, false);
        for &i in own.iter().filter(|&&i| !self.members[i].observed_within(self.at, self.window)) {
            let m = &self.members[i];
            any_own = true;
            view.members += 1;
            view.remote += usize::from(self.remote.get(i).copied().unwrap_or(false));
            let id = (m.tenant, m.worker);
            if self.workers.binary_search(&id).is_err() {
                workers.push(id);
            }
            if m.resident {
                any_resident = true;
                if self.residents.binary_search(&id).is_err() {
                    residents.push(id);
                }
            }
            if let Some(lan) = m.lan {
                view.lan_reporters += 1;
                if self.lans.binary_search(&lan).is_err() {
                    lans.push(lan);
                }
            }
        }
        let new_tenant = |known: &[(u32, u32)], any: bool| usize::from(any && !has_tenant(known, tenant));
        view.tenants += new_tenant(&self.workers, any_own);
        view.resident_tenants += new_tenant(&self.residents, any_resident);
        view.workers += distinct(&mut workers);
        view.resident_workers += distinct(&mut residents);
        view.lans += distinct(&mut lans);
        view
    }
}

/// Distinct tenants of sorted `(tenant, worker)` pairs.
fn tenants_in(pairs: &[(u32, u32)]) -> usize {
    pairs.chunk_by(|a, b| a.0 == b.0).count()
}

/// Whether sorted `(tenant, worker)` pairs hold one of `tenant`'s.
fn has_tenant(pairs: &[(u32, u32)], tenant: u32) -> bool {
    let i = pairs.partition_point(|(t, _)| *t < tenant);
    pairs.get(i).is_some_and(|(t, _)| *t == tenant)
}

fn distinct<T: Ord>(items: &mut Vec<T>) -> usize {
    items.sort_unstable();
    items.dedup();
    items.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: filter every member by whether this tenant counts it, then count.
    fn filtered(members: &[Member], remote: &[bool], viewer: Option<u32>, at: Millis, window: Millis) -> View {
        let counted: Vec<usize> = (0..members.len())
            .filter(|&i| viewer == Some(members[i].tenant) || members[i].observed_within(at, window))
            .collect();
        let mut workers: Vec<_> = counted.iter().map(|&i| (members[i].tenant, members[i].worker)).collect();
        let mut tenants: Vec<_> = workers.iter().map(|(t, _)| *t).collect();
        let mut residents: Vec<_> =
            workers.iter().zip(&counted).filter(|(_, i)| members[**i].resident).map(|(w, _)| *w).collect();
        let mut resident_tenants: Vec<_> = residents.iter().map(|(t, _)| *t).collect();
        let mut lans: Vec<_> = counted.iter().filter_map(|&i| members[i].lan).collect();
        View {
            members: counted.len(),
            remote: counted.iter().filter(|&&i| remote[i]).count(),
            lan_reporters: lans.len(),
            workers: distinct(&mut workers),
            tenants: distinct(&mut tenants),
            resident_workers: distinct(&mut residents),
            resident_tenants: distinct(&mut resident_tenants),
            lans: distinct(&mut lans),
        }
    }

    #[test]
    fn every_tenants_view_counts_what_filtering_by_that_tenant_counts() {
        let (at, window) = (1_000_000, 1_000);
        // A small deterministic generator: tenants share workers' numbers, LANs and residency
        // overlap, about a third of the members were observed in the window.
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for round in 0..200 {
            let count = 1 + round % 40;
            let members: Vec<Member> = (0..count)
                .map(|device| Member {
                    device: device as u32,
                    tenant: next(5) as u32,
                    worker: next(6) as u32,
                    last_seen: at,
                    observed_at: [None, Some(at - 10), Some(at - 5_000)][next(3) as usize],
                    lan: [None, Some(1), Some(2), Some(3)][next(4) as usize],
                    resident: next(2) == 0,
                })
                .collect();
            let remote: Vec<bool> = members.iter().map(|_| next(3) == 0).collect();
            let views = Views::new(&members, &remote, at, window);
            assert_eq!(views.observed(), filtered(&members, &remote, None, at, window));
            for tenant in 0..5 {
                let own: Vec<usize> = (0..members.len()).filter(|&i| members[i].tenant == tenant).collect();
                if own.is_empty() {
                    continue;
                }
                assert_eq!(
                    views.for_tenant(tenant, &own),
                    filtered(&members, &remote, Some(tenant), at, window),
                    "round {round}, tenant {tenant}"
                );
            }
        }
    }
}
