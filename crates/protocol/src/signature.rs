//! `SIG_K1_` signatures, signed exactly as fiojs `Ecc.signHash` signs (so the
//! same key and digest give the same string), verified strictly.
//! fio-standards.md section 3.

use crate::error::{Error, ErrorCode, Result};
use crate::hash::{ripemd160_parts, sha256_parts};
use crate::keys::{preview, PrivateKey, PublicKey};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{ffi, Message, SECP256K1};
use std::fmt;
use std::os::raw::{c_int, c_uchar, c_uint, c_void};
use std::str::FromStr;

/// A compact recoverable signature: `i || r || s` with `i = 27 + 4 + recid`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature {
    bytes: [u8; 65],
}

impl Signature {
    pub fn from_bytes(bytes: [u8; 65]) -> Result<Self> {
        // Compressed-key signers (fiojs, every EOSIO wallet) emit 31..=34.
        // fiojs would also parse 27..=30, but 27+r and 31+r recover the same
        // key, so accepting both would give one signature two encodings.
        if !(31..=34).contains(&bytes[0]) {
            return Err(Error::new(
                ErrorCode::BadSignature,
                "signature header byte must be 31..34 (compressed key, recovery id 0..3)",
            ));
        }
        Ok(Signature { bytes })
    }

    pub fn parse(s: &str) -> Result<Self> {
        let bad = |m: &str| Error::new(ErrorCode::BadSignature, format!("{m}: {}", preview(s)));
        let body = s
            .strip_prefix("SIG_K1_")
            .ok_or_else(|| bad("signature must start with SIG_K1_"))?;
        let raw = bs58::decode(body)
            .into_vec()
            .map_err(|_| bad("signature is not base58"))?;
        if raw.len() != 69 {
            return Err(bad("signature must decode to 69 bytes"));
        }
        let check = ripemd160_parts(&[&raw[..65], b"K1"]);
        if raw[65..] != check[..4] {
            return Err(bad("signature checksum does not match"));
        }
        let mut bytes = [0u8; 65];
        bytes.copy_from_slice(&raw[..65]);
        Self::from_bytes(bytes)
    }

    pub fn to_bytes(&self) -> [u8; 65] {
        self.bytes
    }

    /// EOSIO canonical: r and s each encode to exactly 32 bytes in DER.
    pub fn is_canonical(&self) -> bool {
        is_canonical(&self.bytes)
    }

    fn parts(&self) -> Result<(RecoverableSignature, secp256k1::ecdsa::Signature)> {
        let recid = RecoveryId::try_from(i32::from(self.bytes[0] - 31))
            .map_err(|_| Error::new(ErrorCode::BadSignature, "bad recovery id"))?;
        let rsig = RecoverableSignature::from_compact(&self.bytes[1..], recid)
            .map_err(|_| Error::new(ErrorCode::BadSignature, "signature r or s is out of range"))?;
        let plain = rsig.to_standard();
        let mut normalized = plain;
        normalized.normalize_s();
        if normalized != plain {
            return Err(Error::new(
                ErrorCode::HighSSignature,
                "signature has a high S value (malleable); only low-S is accepted",
            ));
        }
        Ok((rsig, plain))
    }

    /// The public key that made this signature over `digest`. Rejects high S.
    pub fn recover(&self, digest: &[u8; 32]) -> Result<PublicKey> {
        let (rsig, _) = self.parts()?;
        SECP256K1
            .recover_ecdsa(&Message::from_digest(*digest), &rsig)
            .map(PublicKey)
            .map_err(|_| {
                Error::new(
                    ErrorCode::SignatureMismatch,
                    "no public key recovers from this signature",
                )
            })
    }

    /// Checks that `key` signed `digest`: low S, a valid ECDSA signature, and
    /// a recovery byte that points at `key` (so one message has one signature
    /// encoding per (r, s)).
    pub fn verify(&self, digest: &[u8; 32], key: &PublicKey) -> Result<()> {
        let recovered = self.recover(digest)?;
        if &recovered != key {
            return Err(Error::new(
                ErrorCode::SignatureMismatch,
                "signature was not made by the sender key over this message",
            ));
        }
        Ok(())
    }

    /// Plain ECDSA verification without recovery (used as a benchmark baseline).
    pub fn verify_ecdsa_only(&self, digest: &[u8; 32], key: &PublicKey) -> Result<()> {
        let (_, plain) = self.parts()?;
        SECP256K1
            .verify_ecdsa(&Message::from_digest(*digest), &plain, &key.0)
            .map_err(|_| Error::new(ErrorCode::SignatureMismatch, "signature does not verify"))
    }
}

fn is_canonical(c: &[u8; 65]) -> bool {
    c[1] & 0x80 == 0
        && !(c[1] == 0 && c[2] & 0x80 == 0)
        && c[33] & 0x80 == 0
        && !(c[33] == 0 && c[34] & 0x80 == 0)
}

impl PrivateKey {
    /// Sign a 32-byte digest as fiojs `Ecc.signHash` does: RFC 6979 nonce,
    /// low S, and on a non-canonical result retry with the nonce derived from
    /// `sha256(digest || n zero bytes)` for attempt n (fiojs passes `new
    /// Buffer(n)`, which is n zero bytes, not the byte n). The ECDSA message
    /// stays the original digest; only the nonce changes.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Signature {
        let msg = Message::from_digest(*digest);
        let first = SECP256K1.sign_ecdsa_recoverable(&msg, &self.0);
        if let Some(sig) = canonical(first) {
            return sig;
        }
        let mut padded = digest.to_vec();
        for _attempt in 1u32.. {
            padded.push(0);
            let nonce_msg = sha256_parts(&[&padded]);
            if let Some(sig) = canonical(sign_with_nonce_msg(&self.0, digest, &nonce_msg)) {
                return sig;
            }
        }
        unreachable!("the retry loop only ends by returning")
    }
}

fn canonical(rsig: RecoverableSignature) -> Option<Signature> {
    let (recid, rs) = rsig.serialize_compact();
    let mut bytes = [0u8; 65];
    bytes[0] = 27 + 4 + i32::from(recid) as u8;
    bytes[1..].copy_from_slice(&rs);
    is_canonical(&bytes).then_some(Signature { bytes })
}

/// libsecp256k1's RFC 6979 nonce function, fed `nonce_msg` in place of the
/// message being signed. `data` points at the 32-byte `nonce_msg`.
unsafe extern "C" fn rfc6979_of_other_message(
    nonce32: *mut c_uchar,
    _msg32: *const c_uchar,
    key32: *const c_uchar,
    algo16: *const c_uchar,
    data: *mut c_void,
    attempt: c_uint,
) -> c_int {
    let rfc6979 = ffi::secp256k1_nonce_function_rfc6979.expect("libsecp256k1 exports rfc6979");
    rfc6979(
        nonce32,
        data as *const c_uchar,
        key32,
        algo16,
        std::ptr::null_mut(),
        attempt,
    )
}

fn sign_with_nonce_msg(
    key: &secp256k1::SecretKey,
    digest: &[u8; 32],
    nonce_msg: &[u8; 32],
) -> RecoverableSignature {
    let mut out = ffi::recovery::RecoverableSignature::new();
    // SAFETY: all pointers are valid for the call; the context is the
    // library's global signing-capable context; the nonce function only reads
    // 32 bytes from `data`, which points at `nonce_msg`.
    let ok = unsafe {
        ffi::recovery::secp256k1_ecdsa_sign_recoverable(
            SECP256K1.ctx().as_ptr(),
            &mut out,
            digest.as_ptr(),
            key.as_ref().as_ptr(),
            Some(rfc6979_of_other_message),
            nonce_msg.as_ptr() as *const c_void,
        )
    };
    assert_eq!(ok, 1, "signing with a valid secret key cannot fail");
    RecoverableSignature::from(out)
}

impl FromStr for Signature {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Signature::parse(s)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let check = ripemd160_parts(&[&self.bytes, b"K1"]);
        let mut raw = self.bytes.to_vec();
        raw.extend_from_slice(&check[..4]);
        write!(f, "SIG_K1_{}", bs58::encode(raw).into_string())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256;

    #[test]
    fn fiojs_vectors() {
        let k = PrivateKey::from_seed("");
        for (data, expect) in [
            ("I am alive", "SIG_K1_KVpwCb6GGak79nnGbfE8inSu6yv4i14b3PFkQWLzCu6QoqLyrZfBq6dh7zq7ZUV1edPCaWZ8vjyrmkg7DmX3ogeZnTRKmf"),
            ("hello", "SIG_K1_K5V52rsHF1J3pygsqnu4a34VAYddkLTUoXDvQyz68aM4KuzBedXTp7HTSndhCLjAqC9fXHtvrKvQWTVfutWuwJdZt4Yia7"),
        ] {
            let digest = sha256(data.as_bytes());
            let sig = k.sign_digest(&digest);
            assert_eq!(sig.to_string(), expect);
            let parsed = Signature::parse(expect).unwrap();
            assert_eq!(parsed, sig);
            parsed.verify(&digest, &k.public_key()).unwrap();
            assert_eq!(parsed.recover(&digest).unwrap(), k.public_key());
        }
    }

    #[test]
    fn high_s_is_rejected() {
        let k = PrivateKey::from_seed("alice");
        let digest = sha256(b"x");
        let sig = k.sign_digest(&digest);
        // s' = n - s, with the recovery parity flipped: the same point, high S.
        const N: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c,
            0xd0, 0x36, 0x41, 0x41,
        ];
        let mut b = sig.to_bytes();
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let v = i16::from(N[i]) - i16::from(b[33 + i]) - borrow;
            b[33 + i] = v.rem_euclid(256) as u8;
            borrow = i16::from(v < 0);
        }
        b[0] ^= 1;
        let high = Signature::from_bytes(b).unwrap();
        assert_eq!(
            high.verify(&digest, &k.public_key()).unwrap_err().code,
            ErrorCode::HighSSignature
        );
    }

    #[test]
    fn one_encoding_per_signature() {
        let k = PrivateKey::from_seed("alice");
        let digest = sha256(b"y");
        let mut b = k.sign_digest(&digest).to_bytes();
        assert!((31..=34).contains(&b[0]));
        // 27 + r would recover the same key as 31 + r: refused at parse time.
        b[0] -= 4;
        assert_eq!(
            Signature::from_bytes(b).unwrap_err().code,
            ErrorCode::BadSignature
        );
    }

    #[test]
    fn wrong_key_or_digest_fails() {
        let k = PrivateKey::from_seed("alice");
        let other = PrivateKey::from_seed("bob").public_key();
        let digest = sha256(b"payload");
        let sig = k.sign_digest(&digest);
        assert_eq!(
            sig.verify(&digest, &other).unwrap_err().code,
            ErrorCode::SignatureMismatch
        );
        assert!(sig.verify(&sha256(b"other"), &k.public_key()).is_err());
    }
}
