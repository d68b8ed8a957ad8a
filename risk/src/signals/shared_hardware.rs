//! `shared_hardware`: one TPM or authenticator enrolled by several identities —
//! one device doing the work of several workers, as a farm does.
//!
//! The hardware is named by a hash the caller computes from what it verified:
//! a TPM's endorsement key (after credential activation proved the TPM holds
//! it) or an authenticator's credential public key. Not an attestation
//! certificate: FIDO authenticators share those in batches of 100,000 or more.
//! Tenants are adversaries: another tenant's enrollment counts only when it was
//! attested (its hardware proved, not claimed). An unattested enrollment can
//! name any hash (a public key is public), so it counts only for its own tenant.

use serde_json::json;

use crate::Millis;
use crate::engine::{Engine, Finding};
use crate::event::format_time;
use crate::flag::{FlagKind, Severity};

/// How many enrollments of one piece of hardware are remembered.
const MAX_USES: usize = 16;

#[derive(Debug, Clone, Copy)]
pub(crate) struct HardwareUse {
    pub device: u32,
    pub worker: u32,
    pub tenant: u32,
    pub attested: bool,
    pub at: Millis,
}

impl Engine {
    pub(crate) fn observe_hardware(&mut self, hash: &str, me: HardwareUse, out: &mut Vec<Finding>) {
        if !self.hardware.contains_key(hash) {
            // Full: forget the hardware seen first (O(1)), rather than grow.
            while self.hardware.len() >= self.cfg.shared_hardware.max_tracked {
                let Some(oldest) = self.hardware_order.pop_front() else { break };
                self.hardware.remove(&oldest);
            }
            self.hardware_order.push_back(hash.into());
        }
        let uses = self.hardware.entry(hash.into()).or_default();
        uses.retain(|u| u.device != me.device);
        let others: Vec<HardwareUse> =
            uses.iter().copied().filter(|u| (u.tenant, u.worker) != (me.tenant, me.worker)).collect();
        if uses.len() >= MAX_USES {
            uses.remove(0);
        }
        uses.push(me);
        // Each side is judged by what its own tenant may rely on about the other side.
        let counts_for = |viewer: u32, other: &HardwareUse| other.tenant == viewer || other.attested;
        let mine: Vec<HardwareUse> = others.iter().copied().filter(|o| counts_for(me.tenant, o)).collect();
        if !mine.is_empty() {
            let evidence = self.shared_hardware_evidence(hash, me, &mine);
            out.push(Finding { device: me.device, kind: FlagKind::SharedHardware, severity: Severity::High, evidence });
        }
        for other in others.iter().filter(|o| counts_for(o.tenant, &me)) {
            let evidence = self.shared_hardware_evidence(hash, *other, &[me]);
            out.push(Finding {
                device: other.device,
                kind: FlagKind::SharedHardware,
                severity: Severity::High,
                evidence,
            });
        }
    }

    /// Names the holders of the viewer's own tenant; another tenant's are only counted.
    fn shared_hardware_evidence(&self, hash: &str, viewer: HardwareUse, others: &[HardwareUse]) -> serde_json::Value {
        let own: Vec<serde_json::Value> = others
            .iter()
            .filter(|o| o.tenant == viewer.tenant)
            .map(|o| {
                let mut v = self.describe_device(o.device);
                if let Some(map) = v.as_object_mut() {
                    map.insert("enrolled_at".into(), format_time(o.at).into());
                    map.insert("attested".into(), o.attested.into());
                }
                v
            })
            .collect();
        let mut other_tenants: Vec<u32> =
            others.iter().filter(|o| o.tenant != viewer.tenant).map(|o| o.tenant).collect();
        other_tenants.sort_unstable();
        other_tenants.dedup();
        json!({
            "pattern": "one TPM or authenticator enrolled by several workers",
            "hardware": hash,
            "device": self.describe_device(viewer.device),
            "enrolled_at": format_time(viewer.at),
            "same_tenant_holders": own,
            "other_tenants_holders": others.iter().filter(|o| o.tenant != viewer.tenant).count(),
            "other_tenants": other_tenants.len(),
            "counted": "this tenant's enrollments, and other tenants' only when attested (the hardware proved, not named)",
        })
    }
}
