//! Thin wrappers over the RustCrypto hashes, so call sites read like the spec.

use hmac::{Hmac, Mac};
use ripemd::Ripemd160;
use sha2::{Digest, Sha256, Sha512};

/// Lowercase hex. `hex::encode` builds its string a char at a time (about
/// 470 ns for a 32-byte id here, 90 ns this way), and ids are rendered
/// twice per accepted message.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("the buffer is twice the input");
    String::from_utf8(out).expect("hex digits are ASCII")
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

pub fn sha512(data: &[u8]) -> [u8; 64] {
    Sha512::digest(data).into()
}

pub fn ripemd160_parts(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Ripemd160::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

pub fn sha1(data: &[u8]) -> [u8; 20] {
    sha1::Sha1::digest(data).into()
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

pub fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).expect("hmac takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Number of leading zero bits of a hash (the envelope's proof of work).
pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for b in hash {
        if *b == 0 {
            bits += 8;
        } else {
            bits += b.leading_zeros();
            break;
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    #[test]
    fn to_hex_is_lowercase_hex() {
        assert_eq!(super::to_hex(&[]), "");
        assert_eq!(super::to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        let id: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37)).collect();
        assert_eq!(super::to_hex(&id), hex::encode(&id));
    }
}
