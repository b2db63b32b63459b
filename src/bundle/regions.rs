//! The CIDR-to-region table that fills `context.region`.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

/// Networks mapped to region names. The longest matching prefix wins.
#[derive(Debug, Clone)]
pub struct RegionTable {
    networks: Vec<(IpNet, String)>,
    default: String,
}

/// The region of addresses no network matches, when the table names none.
pub const DEFAULT_REGION: &str = "unknown";

impl Default for RegionTable {
    fn default() -> Self {
        Self {
            networks: Vec::new(),
            default: DEFAULT_REGION.to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    default: Option<String>,
    #[serde(default)]
    region: Vec<RawRegion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: String,
    networks: Vec<String>,
}

impl RegionTable {
    /// Parses the TOML table. Errors name the entry and the expected form.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let raw: RawTable = toml::from_str(text).map_err(|err| err.to_string())?;
        let mut networks = Vec::new();
        let mut problems = Vec::new();
        for (index, region) in raw.region.into_iter().enumerate() {
            if region.name.is_empty() {
                problems.push(format!("region[{index}].name: must not be empty"));
            }
            for network in &region.networks {
                let key = format!("region[{index}].networks (`{}`)", region.name);
                if let Some(net) = crate::config::parse_network(network, &key, &mut problems) {
                    networks.push((net, region.name.clone()));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        // Longest prefix first, so the first match is the most specific one.
        networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Ok(Self {
            networks,
            default: raw.default.unwrap_or_else(|| DEFAULT_REGION.to_owned()),
        })
    }

    /// Reads the table from a file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|err| err.to_string())?;
        Self::from_toml(&text)
    }

    /// Returns the region of `ip`, or the default region when no network contains it.
    pub fn region_of(&self, ip: IpAddr) -> &str {
        let ip = canonical(ip);
        self.networks
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map_or(self.default.as_str(), |(_, name)| name.as_str())
    }
}

/// Treats an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack socket reports
/// IPv4 peers) as the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let table = RegionTable::from_toml(
            r#"
            default = "elsewhere"
            [[region]]
            name = "wide"
            networks = ["10.0.0.0/8"]
            [[region]]
            name = "narrow"
            networks = ["10.1.0.0/16", "2001:db8::/32"]
            "#,
        );
        let table = table.unwrap_or_else(|err| unreachable!("{err}"));
        let region = |text: &str| {
            table
                .region_of(text.parse().unwrap_or_else(|_| unreachable!()))
                .to_owned()
        };
        assert_eq!(region("10.1.2.3"), "narrow");
        assert_eq!(region("10.2.2.3"), "wide");
        assert_eq!(region("::ffff:10.1.0.1"), "narrow");
        assert_eq!(region("2001:db8::1"), "narrow");
        assert_eq!(region("192.0.2.1"), "elsewhere");
    }

    #[test]
    fn invalid_network_named() {
        let err =
            RegionTable::from_toml("[[region]]\nname = \"a\"\nnetworks = [\"10.0.0.0/33\"]\n");
        let message = err.err().unwrap_or_default();
        assert!(message.contains("`10.0.0.0/33`"), "{message}");
        assert!(message.contains("region[0]"), "{message}");
    }
}
