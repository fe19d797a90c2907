//! The DNS resolver of the safe-fetch client: it resolves the name itself and hands the HTTP
//! connector only addresses that passed [`Reach::allows`]. The connector connects to exactly
//! these addresses, so a name that resolves differently a second time (DNS rebinding) cannot
//! slip past the check.

use super::address::Reach;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;

/// A name whose addresses include one the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to an address outbound fetches may not reach")]
pub(super) struct RefusedAddress {
    pub host: String,
}

/// Resolves with the system resolver, then refuses the whole name if any address is not
/// allowed (a name that mixes public and private addresses is not trusted either).
#[derive(Debug, Clone, Copy)]
pub(super) struct CheckedResolver {
    pub reach: Reach,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let reach = self.reach;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| !reach.allows(a.ip())) {
                return Err(Box::new(RefusedAddress { host }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
