//! EOSIO account names as the u64 the chain stores (`owner_account`,
//! `account` table columns), and FIO's hash index values.

/// EOSIO `string_to_name`: up to 13 characters of `.12345a-z`, the 13th
/// limited to `.1-5a-j`. `None` for anything the chain would not accept.
pub fn name_to_u64(name: &str) -> Option<u64> {
    let b = name.as_bytes();
    if b.len() > 13 {
        return None;
    }
    let sym = |c: u8| -> Option<u64> {
        match c {
            b'a'..=b'z' => Some(u64::from(c - b'a') + 6),
            b'1'..=b'5' => Some(u64::from(c - b'1') + 1),
            b'.' => Some(0),
            _ => None,
        }
    };
    let mut value = 0u64;
    for (i, &c) in b.iter().enumerate() {
        let s = sym(c)?;
        if i < 12 {
            value |= (s & 0x1f) << (64 - 5 * (i as u32 + 1));
        } else {
            if s > 0x0f {
                return None;
            }
            value |= s;
        }
    }
    Some(value)
}

/// Render a u64 the way nodeos JSON renders a `uint64` column: numbers up to
/// 2^32-1 stay numbers, larger ones become decimal strings (fc's
/// `stringify_large_ints_and_doubles`), since JavaScript cannot hold them.
pub fn u64_json(v: u64) -> serde_json::Value {
    if v <= u64::from(u32::MAX) {
        serde_json::Value::from(v)
    } else {
        serde_json::Value::from(v.to_string())
    }
}

/// Read a `uint64` the chain may have rendered as number or decimal string.
pub fn json_u64(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) if !s.is_empty() && s.len() <= 20 => {
            if s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_to_u64(""), Some(0));
        // eosio = 6138663577826885632 (a well-known constant).
        assert_eq!(name_to_u64("eosio"), Some(6_138_663_577_826_885_632));
        assert!(name_to_u64("UPPER").is_none());
        assert!(name_to_u64("aaaaaaaaaaaaaz").is_none());
        assert!(name_to_u64("aaaaaaaaaaaaz").is_none());
        assert!(name_to_u64("aaaaaaaaaaaaj").is_some());
    }

    #[test]
    fn json_ints() {
        assert_eq!(u64_json(5), serde_json::json!(5));
        assert_eq!(u64_json(1 << 40), serde_json::json!("1099511627776"));
        assert_eq!(json_u64(&serde_json::json!("1099511627776")), Some(1 << 40));
        assert_eq!(json_u64(&serde_json::json!(7)), Some(7));
        assert_eq!(json_u64(&serde_json::json!(-7)), None);
        assert_eq!(json_u64(&serde_json::json!("x")), None);
        assert_eq!(json_u64(&serde_json::json!(1.5)), None);
    }
}
