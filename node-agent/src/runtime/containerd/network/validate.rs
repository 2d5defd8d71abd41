//! What the network accepts: subnets, bridge names and sandbox ids.

use std::fmt;
use std::net::IpAddr;

use super::NetworkError;

/// Linux interface names are at most 15 bytes.
const MAX_BRIDGE_LEN: usize = 15;
/// Sandbox ids become file names and CNI container ids.
const MAX_ID_LEN: usize = 64;

/// A parsed CIDR whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Subnet {
    pub(super) addr: IpAddr,
    prefix: u8,
}

impl Subnet {
    pub(super) fn parse(text: &str) -> Result<Subnet, NetworkError> {
        let invalid = |reason: &str| NetworkError::InvalidSubnet {
            subnet: text.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| invalid("write it as address/prefix, e.g. 10.88.0.0/16"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| invalid("the address is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| invalid("the prefix length is not a number"))?;
        // At least 4 addresses: network, gateway, one sandbox, broadcast.
        let (bits, host_bits_set) = match addr {
            IpAddr::V4(v4) => (
                32,
                prefix <= 32 && u32::from(v4) & host_mask_v4(prefix) != 0,
            ),
            IpAddr::V6(v6) => (
                128,
                prefix <= 128 && u128::from(v6) & host_mask_v6(prefix) != 0,
            ),
        };
        if prefix > bits - 2 {
            return Err(invalid(&format!(
                "the prefix length must be at most {} to leave room for sandboxes",
                bits - 2
            )));
        }
        if host_bits_set {
            return Err(invalid(
                "the address has host bits set; use the network's first address",
            ));
        }
        Ok(Subnet { addr, prefix })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn host_mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)
}

fn host_mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)
}

pub(super) fn validate_bridge(name: &str) -> Result<(), NetworkError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let valid = !name.is_empty()
        && name.len() <= MAX_BRIDGE_LEN
        && name.chars().all(valid_char)
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(NetworkError::InvalidBridge {
            name: name.to_string(),
        })
    }
}

/// Accepts ids that are safe as file names and CNI container ids: `[a-z0-9-]{1,64}`.
pub(super) fn validate_id(id: &str) -> Result<(), NetworkError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(NetworkError::InvalidId { id: id.to_string() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subnets_bridges_and_ids_are_validated() {
        assert_eq!(
            Subnet::parse("10.88.0.0/16").unwrap().to_string(),
            "10.88.0.0/16"
        );
        assert!(Subnet::parse("fd00::/64").is_ok());
        for bad in [
            "10.88.0.0",
            "10.88.0.1/16",
            "10.88.0.0/31",
            "10.88.0.0/x",
            "nope/8",
            "::/127",
        ] {
            assert!(
                matches!(Subnet::parse(bad), Err(NetworkError::InvalidSubnet { .. })),
                "{bad}"
            );
        }
        assert!(validate_bridge("berth0").is_ok());
        for bad in ["", "a-name-too-long-x", "has space", "a/b", "..", "ü"] {
            assert!(validate_bridge(bad).is_err(), "{bad:?}");
        }
        assert!(validate_id("0f6c1a2e-9b1d-4c3e-8f00-1234567890ab").is_ok());
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            "Upper",
            "a_b",
            "a.b",
            &"a".repeat(65),
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
