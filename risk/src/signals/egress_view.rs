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
#[derive(Debug, Default, Clone)]
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

/// The observed members' distinct workers, tenants, residents and LANs, sorted for lookups.
pub(crate) struct Views<'a> {
    members: &'a [Member],
    /// `remote[i]`: whether `members[i]` carries a remote-control flag.
    remote: &'a [bool],
    observed: Vec<bool>,
    base: View,
    workers: Vec<(u32, u32)>,
    tenants: Vec<u32>,
    residents: Vec<(u32, u32)>,
    resident_tenants: Vec<u32>,
    lans: Vec<u64>,
}

impl<'a> Views<'a> {
    pub(crate) fn new(members: &'a [Member], remote: &'a [bool], at: Millis, window: Millis) -> Self {
        let observed: Vec<bool> = members.iter().map(|m| m.observed_within(at, window)).collect();
        let counted = || members.iter().zip(&observed).filter(|(_, o)| **o).map(|(m, _)| m);
        let mut workers: Vec<(u32, u32)> = counted().map(|m| (m.tenant, m.worker)).collect();
        workers.sort_unstable();
        workers.dedup();
        let mut tenants: Vec<u32> = workers.iter().map(|(t, _)| *t).collect();
        tenants.dedup();
        let mut residents: Vec<(u32, u32)> = counted().filter(|m| m.resident).map(|m| (m.tenant, m.worker)).collect();
        residents.sort_unstable();
        residents.dedup();
        let mut resident_tenants: Vec<u32> = residents.iter().map(|(t, _)| *t).collect();
        resident_tenants.dedup();
        let mut lans: Vec<u64> = counted().filter_map(|m| m.lan).collect();
        lans.sort_unstable();
        lans.dedup();
        let base = View {
            workers: workers.len(),
            tenants: tenants.len(),
            members: counted().count(),
            remote: members.iter().zip(&observed).zip(remote).filter(|((_, o), r)| **o && **r).count(),
            resident_workers: residents.len(),
            resident_tenants: resident_tenants.len(),
            lans: lans.len(),
            lan_reporters: counted().filter(|m| m.lan.is_some()).count(),
        };
        Self { members, remote, observed, base, workers, tenants, residents, resident_tenants, lans }
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
        for &i in own.iter().filter(|&&i| !self.observed[i]) {
            let m = &self.members[i];
            any_own = true;
            view.members += 1;
            view.remote += usize::from(self.remote[i]);
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
        let new_tenant = |known: &[u32], any: bool| usize::from(any && known.binary_search(&tenant).is_err());
        view.tenants += new_tenant(&self.tenants, any_own);
        view.resident_tenants += new_tenant(&self.resident_tenants, any_resident);
        view.workers += distinct(&mut workers);
        view.resident_workers += distinct(&mut residents);
        view.lans += distinct(&mut lans);
        view
    }
}

fn distinct<T: Ord>(items: &mut Vec<T>) -> usize {
    items.sort_unstable();
    items.dedup();
    items.len()
}
