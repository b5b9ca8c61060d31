//! FIO Address rules exactly as fio.contracts checks them
//! (fio-standards.md section 6).

use crate::error::{Error, ErrorCode, Result};
use crate::hash::sha1;
use crate::keys::preview;

fn part_ok(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !part.starts_with('-')
        && !part.ends_with('-')
}

/// Validate an address that must already be canonical (lowercase).
/// An uppercase address gets `non_canonical_address`, any other breach `bad_address`.
pub fn validate_address(addr: &str) -> Result<()> {
    if addr.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Error::new(
            ErrorCode::NonCanonicalAddress,
            format!("FIO Address must be lowercase: {}", preview(addr)),
        ));
    }
    let bad = |m: &str| Error::new(ErrorCode::BadAddress, format!("{m}: {}", preview(addr)));
    if addr.len() < 3 || addr.len() > 64 {
        return Err(bad("FIO Address must be 3 to 64 characters"));
    }
    let (name, domain) = addr
        .split_once('@')
        .ok_or_else(|| bad("FIO Address must be name@domain"))?;
    if !part_ok(name) || !part_ok(domain) {
        return Err(bad(
            "each part of a FIO Address is a-z, 0-9 and '-', not starting or ending with '-'",
        ));
    }
    Ok(())
}

/// Lowercase, then validate: the canonical form of user input.
pub fn canonical_address(input: &str) -> Result<String> {
    let lower = input.trim().to_ascii_lowercase();
    validate_address(&lower)?;
    Ok(lower)
}

/// Validate a domain alone (1..62 characters).
pub fn validate_domain(domain: &str) -> Result<()> {
    if domain.is_empty() || domain.len() > 62 || !part_ok(domain) {
        return Err(Error::new(
            ErrorCode::BadAddress,
            format!("not a valid FIO domain: {}", preview(domain)),
        ));
    }
    Ok(())
}

/// The domain part of a valid address.
pub fn domain_of(addr: &str) -> &str {
    addr.split_once('@').map(|(_, d)| d).unwrap_or(addr)
}

/// `get_table_rows` bound for the fionames index: `0x` + hex of the first
/// 16 bytes of sha1(name), byte-reversed (an i128 key, little-endian in memory).
pub fn name_hash_bound(name: &str) -> String {
    let h = sha1(name.as_bytes());
    let mut first: [u8; 16] = h[..16].try_into().expect("16 bytes");
    first.reverse();
    format!("0x{}", hex::encode(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid() {
        for ok in ["a@b", "alice@wallet", "a-b@c-d", "0@9", "x@dev"] {
            validate_address(ok).unwrap();
        }
        let long_ok = format!("{}@{}", "a".repeat(31), "b".repeat(32));
        assert_eq!(long_ok.len(), 64);
        validate_address(&long_ok).unwrap();
        for bad in [
            "", "ab", "a@", "@b", "alice", "-a@b", "a-@b", "a@-b", "a@b-", "a b@c", "a@b@c",
            "a_b@c", "a.b@c", "ä@b",
        ] {
            assert_eq!(
                validate_address(bad).unwrap_err().code,
                ErrorCode::BadAddress,
                "{bad}"
            );
        }
        let too_long = format!("{}@{}", "a".repeat(32), "b".repeat(32));
        assert_eq!(
            validate_address(&too_long).unwrap_err().code,
            ErrorCode::BadAddress
        );
        assert_eq!(
            validate_address("Alice@wallet").unwrap_err().code,
            ErrorCode::NonCanonicalAddress
        );
        assert_eq!(canonical_address("Alice@Wallet").unwrap(), "alice@wallet");
        // The chain allows "--" inside a part and long name parts.
        validate_address(&format!("{}@d", "a--b".repeat(10))).unwrap();
    }

    #[test]
    fn table_bound_vector() {
        assert_eq!(
            name_hash_bound("test@fiotestnet"),
            "0xeb0816aeb936141ebec9a4a76c64df58"
        );
    }

    #[test]
    fn domains() {
        validate_domain("a").unwrap();
        validate_domain(&"d".repeat(62)).unwrap();
        assert!(validate_domain(&"d".repeat(63)).is_err());
        assert!(validate_domain("-d").is_err());
    }
}
