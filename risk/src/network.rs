//! Operator network classes, registered offices, and egress keys.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::config::{NetworkRule, OfficeRule};
use super::geo::NetworkClass;

/// What devices are grouped by when looking for shared egress.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EgressKey {
    V4(u32),
    /// The upper bits of an IPv6 address (the configured prefix, /64 by default).
    V6(u128),
    /// A LAN fingerprint (hashed gateway MAC or Wi-Fi BSSID).
    Lan(Box<str>),
    /// A LAN fingerprint as one tenant's devices reported it: answer sweeps chain only
    /// within a tenant on a LAN, since the fingerprint is the devices' own claim.
    TenantLan(u32, Box<str>),
}

impl EgressKey {
    pub fn for_ip(ip: IpAddr, v6_prefix: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = if v6_prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(v6_prefix.min(128))) };
                Self::V6(bits & mask)
            }
        }
    }

    /// How evidence names it.
    pub fn describe(&self, v6_prefix: u8) -> String {
        match self {
            Self::V4(v) => std::net::Ipv4Addr::from(*v).to_string(),
            Self::V6(v) => format!("{}/{v6_prefix}", std::net::Ipv6Addr::from(*v)),
            Self::Lan(hash) | Self::TenantLan(_, hash) => format!("lan:{hash}"),
        }
    }

    pub fn is_lan(&self) -> bool {
        matches!(self, Self::Lan(_) | Self::TenantLan(..))
    }
}

/// Classifies addresses by the operator's CIDR and ASN lists and knows the
/// tenants' registered offices.
#[derive(Debug, Default)]
pub struct Networks {
    cidrs: Vec<(IpNet, NetworkClass)>,
    asns: HashMap<u32, NetworkClass>,
    offices: Vec<(IpNet, String)>,
    /// Offices the tenants' admins registered (tetherd), replaced per tenant.
    registered: HashMap<String, Vec<IpNet>>,
}

impl Networks {
    pub fn new(rules: &[NetworkRule], offices: &[OfficeRule]) -> Self {
        let mut cidrs: Vec<(IpNet, NetworkClass)> =
            rules.iter().flat_map(|r| r.cidrs.iter().map(move |c| (c.trunc(), r.class))).collect();
        // Most specific first.
        cidrs.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        let asns = rules.iter().flat_map(|r| r.asns.iter().map(move |a| (*a, r.class))).collect();
        let offices = offices.iter().flat_map(|o| o.cidrs.iter().map(move |c| (c.trunc(), o.tenant.clone()))).collect();
        Self { cidrs, asns, offices, registered: HashMap::new() }
    }

    /// Replaces the office egresses `tenant` registered itself.
    pub fn register_offices(&mut self, tenant: &str, cidrs: &[IpNet]) {
        if cidrs.is_empty() {
            self.registered.remove(tenant);
        } else {
            self.registered.insert(tenant.to_string(), cidrs.iter().map(IpNet::trunc).collect());
        }
    }

    /// Operator CIDRs first, then operator ASNs, then what the event or database said.
    pub fn classify(&self, ip: IpAddr, asn: Option<u32>, reported: Option<NetworkClass>) -> Option<NetworkClass> {
        let ip = ip.to_canonical();
        self.cidrs
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, class)| *class)
            .or_else(|| asn.and_then(|a| self.asns.get(&a).copied()))
            .or(reported)
    }

    /// Whether `ip` is one of `tenant`'s registered office egresses.
    pub fn is_office_of(&self, tenant: &str, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.offices.iter().any(|(net, t)| t == tenant && net.contains(&ip))
            || self.registered.get(tenant).is_some_and(|nets| nets.iter().any(|net| net.contains(&ip)))
    }
}
