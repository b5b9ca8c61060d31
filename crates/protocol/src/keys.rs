//! FIO public and private keys in their string forms, and the actor (account
//! name) the FIO Chain derives from a public key. fio-standards.md sections 1-2.

use crate::error::{Error, ErrorCode, Result};
use crate::hash::{ripemd160_parts, sha256, sha256_parts};
use secp256k1::SECP256K1;
use std::fmt;
use std::str::FromStr;

/// A secp256k1 public key that is known to be a point on the curve.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub(crate) secp256k1::PublicKey);

impl PublicKey {
    /// Parse `FIO...` or `PUB_K1_...`; checks length, checksum and that the
    /// point is on the curve (the chain does not check the last; we must).
    ///
    /// Keys repeat (a sender's key and encrypt key, a recipient's encrypt
    /// key), and decompressing a point (a field square root) plus base58 and
    /// the checksum cost about a fifth of an envelope's whole check. So each
    /// thread remembers the strings it parsed successfully, up to
    /// `KEY_CACHE_MAX` (then it starts again): the same string always gives
    /// the same key, so the cache changes no answer, and its memory is bounded
    /// whatever the input.
    pub fn parse(s: &str) -> Result<Self> {
        use std::cell::RefCell;
        use std::collections::HashMap;
        const KEY_CACHE_MAX: usize = 4096;
        thread_local! {
            static PARSED: RefCell<HashMap<Box<str>, PublicKey>> = RefCell::new(HashMap::new());
        }
        if let Some(k) = PARSED.with(|c| c.borrow().get(s).copied()) {
            return Ok(k);
        }
        let k = Self::parse_uncached(s)?;
        PARSED.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= KEY_CACHE_MAX {
                c.clear();
            }
            c.insert(s.into(), k);
        });
        Ok(k)
    }

    fn parse_uncached(s: &str) -> Result<Self> {
        let bad = |m: &str| Error::new(ErrorCode::BadPublicKey, format!("{m}: {}", preview(s)));
        let (body, k1_suffix) = if let Some(rest) = s.strip_prefix("PUB_K1_") {
            (rest, true)
        } else if let Some(rest) = s.strip_prefix("FIO") {
            (rest, false)
        } else {
            return Err(bad("public key must start with FIO or PUB_K1_"));
        };
        let raw = bs58::decode(body)
            .into_vec()
            .map_err(|_| bad("public key is not base58"))?;
        if raw.len() != 37 {
            return Err(bad("public key must decode to 37 bytes"));
        }
        let (k33, check) = raw.split_at(33);
        let expect = if k1_suffix {
            ripemd160_parts(&[k33, b"K1"])
        } else {
            ripemd160_parts(&[k33])
        };
        if check != &expect[..4] {
            return Err(bad("public key checksum does not match"));
        }
        Self::from_compressed(k33)
    }

    /// From the 33-byte SEC1 compressed point.
    pub fn from_compressed(k33: &[u8]) -> Result<Self> {
        if k33.len() != 33 || (k33[0] != 2 && k33[0] != 3) {
            return Err(Error::new(
                ErrorCode::BadPublicKey,
                "public key is not a compressed point",
            ));
        }
        secp256k1::PublicKey::from_slice(k33)
            .map(PublicKey)
            .map_err(|_| Error::new(ErrorCode::BadPublicKey, "public key is not on the curve"))
    }

    pub fn compressed(&self) -> [u8; 33] {
        self.0.serialize()
    }

    /// The `FIO...` string form.
    pub fn to_fio_string(&self) -> String {
        let k33 = self.compressed();
        let check = ripemd160_parts(&[&k33]);
        let mut raw = Vec::with_capacity(37);
        raw.extend_from_slice(&k33);
        raw.extend_from_slice(&check[..4]);
        format!("FIO{}", bs58::encode(raw).into_string())
    }

    /// The `PUB_K1_...` string form.
    pub fn to_k1_string(&self) -> String {
        let k33 = self.compressed();
        let check = ripemd160_parts(&[&k33, b"K1"]);
        let mut raw = Vec::with_capacity(37);
        raw.extend_from_slice(&k33);
        raw.extend_from_slice(&check[..4]);
        format!("PUB_K1_{}", bs58::encode(raw).into_string())
    }

    /// The FIO account name (actor) owning names registered to this key.
    pub fn actor(&self) -> String {
        actor_of_compressed(&self.compressed())
    }
}

/// fio.contracts `key_to_account`: 13 non-zero 5-bit chunks (the last 4-bit)
/// taken from the key bytes after the prefix byte, rendered as an EOSIO name.
fn actor_of_compressed(k33: &[u8; 33]) -> String {
    let mut value: u64 = 0;
    let mut len = 0;
    // The 4-byte base58 checksum follows the key in the chain's buffer; a key
    // whose 32 x-bytes hold fewer than 13 non-zero chunks would read into it.
    let check = ripemd160_parts(&[k33]);
    let bytes: Vec<u8> = k33.iter().chain(check[..4].iter()).copied().collect();
    let mut i = 1;
    while len <= 12 && i < bytes.len() {
        let chunk = u64::from(bytes[i] & if len == 12 { 0x0f } else { 0x1f });
        i += 1;
        if chunk == 0 {
            continue;
        }
        let shift = if len == 12 { 0 } else { 5 * (12 - len) - 1 };
        value |= chunk << shift;
        len += 1;
    }
    let mut name = name_to_string(value);
    name.truncate(12);
    name
}

/// EOSIO name rendering of a u64, all 13 characters (no trimming), as fiojs does.
fn name_to_string(mut value: u64) -> String {
    const CHARMAP: &[u8; 32] = b".12345abcdefghijklmnopqrstuvwxyz";
    let mut out = [b'.'; 13];
    out[12] = CHARMAP[(value & 0x0f) as usize];
    value >>= 4;
    for i in 1..=12 {
        out[12 - i] = CHARMAP[(value & 0x1f) as usize];
        value >>= 5;
    }
    String::from_utf8(out.to_vec()).expect("charmap is ASCII")
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PublicKey::parse(s)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_fio_string())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_fio_string())
    }
}

/// A secp256k1 private key. Its Debug form never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(pub(crate) secp256k1::SecretKey);

impl PrivateKey {
    /// Parse a WIF (`5...`, optionally with the 0x01 compression suffix) or a
    /// `PVT_K1_...` key.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = |m: &str| Error::new(ErrorCode::BadPrivateKey, m.to_string());
        if let Some(body) = s.strip_prefix("PVT_K1_") {
            let raw = bs58::decode(body)
                .into_vec()
                .map_err(|_| bad("private key is not base58"))?;
            if raw.len() != 36 {
                return Err(bad("PVT_K1_ key must decode to 36 bytes"));
            }
            let check = ripemd160_parts(&[&raw[..32], b"K1"]);
            if raw[32..] != check[..4] {
                return Err(bad("private key checksum does not match"));
            }
            return Self::from_bytes(&raw[..32]);
        }
        let raw = bs58::decode(s)
            .into_vec()
            .map_err(|_| bad("private key is neither WIF nor PVT_K1_"))?;
        let payload_len = match raw.len() {
            37 => 33,
            38 if raw[33] == 0x01 => 34,
            _ => return Err(bad("WIF private key has the wrong length")),
        };
        let (payload, check) = raw.split_at(payload_len);
        if payload[0] != 0x80 {
            return Err(bad("WIF private key must start with version byte 0x80"));
        }
        let expect = sha256(&sha256(payload));
        if check != &expect[..4] {
            return Err(bad("private key checksum does not match"));
        }
        Self::from_bytes(&payload[1..33])
    }

    pub fn from_bytes(d: &[u8]) -> Result<Self> {
        secp256k1::SecretKey::from_slice(d)
            .map(PrivateKey)
            .map_err(|_| Error::new(ErrorCode::BadPrivateKey, "private key is out of range"))
    }

    /// fiojs `PrivateKey.fromSeed`: the key is sha256 of the seed text.
    pub fn from_seed(seed: &str) -> Self {
        Self::from_bytes(&sha256(seed.as_bytes()))
            .expect("sha256 output is a valid key but for ~2^-128")
    }

    pub fn random() -> Self {
        let mut rng = rand::thread_rng();
        loop {
            let mut d = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rng, &mut d);
            if let Ok(k) = Self::from_bytes(&d) {
                return k;
            }
        }
    }

    pub fn to_wif(&self) -> String {
        let mut payload = Vec::with_capacity(37);
        payload.push(0x80);
        payload.extend_from_slice(&self.0.secret_bytes());
        let check = sha256_parts(&[&sha256(&payload)]);
        payload.extend_from_slice(&check[..4]);
        bs58::encode(payload).into_string()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key(SECP256K1))
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.secret_bytes()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(<secret of {}>)", self.public_key())
    }
}

/// A short, safe excerpt of hostile input for error messages.
pub(crate) fn preview(s: &str) -> String {
    let mut out: String = s.chars().take(60).filter(|c| !c.is_control()).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-thread parse cache gives the uncached answer, also past its
    /// size limit (where it starts again), and never caches a failure.
    #[test]
    fn parse_cache_agrees_with_parsing() {
        let keys: Vec<PublicKey> = (0..5000)
            .map(|i| {
                PrivateKey::from_bytes(&sha256(&(i as u32).to_le_bytes()))
                    .unwrap()
                    .public_key()
            })
            .collect();
        for _ in 0..2 {
            for k in &keys {
                let text = k.to_fio_string();
                assert_eq!(PublicKey::parse(&text).unwrap(), *k);
                assert_eq!(PublicKey::parse_uncached(&text).unwrap(), *k);
                assert_eq!(PublicKey::parse(&k.to_k1_string()).unwrap(), *k);
            }
        }
        let good = keys[0].to_fio_string();
        let mut bad = good.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'2' { b'3' } else { b'2' };
        let bad = String::from_utf8(bad).unwrap();
        for _ in 0..2 {
            assert!(PublicKey::parse(&bad).is_err());
        }
    }

    #[test]
    fn seed_vectors() {
        let cases = [
            (
                "",
                "5KYZdUEo39z3FPrtuX2QbbwGnNP5zTd7yyr2SC1j299sBCnWjss",
                "FIO859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2HqhToVM",
            ),
            (
                "alice",
                "5J9bWm2ThenDm3tjvmUgHtWCVMUdjRR1pxnRtnJjvKA4b2ut5WK",
                "FIO7zsqi7QUAjTAdyynd6DVe8uv4K8gCTRHnAoMN9w9CA1xLCTDVv",
            ),
            (
                "bob",
                "5JoQtsKQuH8hC9MyvfJAqo6qmKLm8ePYNucs7tPu2YxG12trzBt",
                "FIO5VE6Dgy9FUmd1mFotXwF88HkQN1KysCWLPqpVnDMjRvGRi1YrM",
            ),
        ];
        for (seed, wif, public) in cases {
            let k = PrivateKey::from_seed(seed);
            assert_eq!(k.to_wif(), wif);
            assert_eq!(k.public_key().to_fio_string(), public);
            assert_eq!(PrivateKey::parse(wif).unwrap(), k);
            assert_eq!(PublicKey::parse(public).unwrap(), k.public_key());
        }
    }

    #[test]
    fn k1_forms() {
        let k = PrivateKey::from_seed("").public_key();
        assert_eq!(
            k.to_k1_string(),
            "PUB_K1_859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2Ht7beeX"
        );
        assert_eq!(
            PublicKey::parse("PUB_K1_859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2Ht7beeX").unwrap(),
            k
        );
        // A FIO checksum under the PUB_K1_ prefix is wrong.
        assert_eq!(
            PublicKey::parse("PUB_K1_859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2HqhToVM")
                .unwrap_err()
                .code,
            ErrorCode::BadPublicKey
        );
    }

    #[test]
    fn private_key_forms() {
        let k = PrivateKey::from_seed("alice");
        let d = k.secret_bytes();
        // Compression-suffixed WIF.
        let mut payload = vec![0x80];
        payload.extend_from_slice(&d);
        payload.push(0x01);
        let check = sha256(&sha256(&payload));
        payload.extend_from_slice(&check[..4]);
        assert_eq!(
            PrivateKey::parse(&bs58::encode(&payload).into_string()).unwrap(),
            k
        );
        // PVT_K1_ form.
        let check = ripemd160_parts(&[&d, b"K1"]);
        let mut raw = d.to_vec();
        raw.extend_from_slice(&check[..4]);
        assert_eq!(
            PrivateKey::parse(&format!("PVT_K1_{}", bs58::encode(&raw).into_string())).unwrap(),
            k
        );
        // A flipped character breaks the checksum.
        assert!(PrivateKey::parse("5J9bWm2ThenDm3tjvmUgHtWCVMUdjRR1pxnRtnJjvKA4b2ut5WL").is_err());
        assert!(format!("{k:?}").find(&k.to_wif()).is_none());
    }

    #[test]
    fn mnemonic_vector_key() {
        // The BIP-44 vector's key pair (derivation itself is a wallet concern).
        let k = PrivateKey::parse("5Kbb37EAqQgZ9vWUHoPiC2uXYhyGSFNbL6oiDp24Ea1ADxV1qnu").unwrap();
        assert_eq!(
            k.public_key().to_fio_string(),
            "FIO5kJKNHwctcfUM5XZyiWSqSTM5HTzznJP9F3ZdbhaQAHEVq575o"
        );
    }

    #[test]
    fn actor_vectors() {
        for (key, actor) in [
            (
                "FIO7isxEua78KPVbGzKemH4nj2bWE52gqj8Hkac3tc7jKNvpfWzYS",
                "p4hc54ppiofx",
            ),
            (
                "FIO6cDpi7vPnvRwMEdXtLnAmFwygaQ8CzD7vqKLBJ2GfgtHBQ4PPy",
                "2odzomo2v4pe",
            ),
            (
                "FIO859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2HqhToVM",
                "3ftmgtgiqmn2",
            ),
        ] {
            assert_eq!(PublicKey::parse(key).unwrap().actor(), actor);
        }
    }

    #[test]
    fn rejects_bad_public_keys() {
        for bad in [
            "",
            "EOS859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2HqhToVM",
            "FIO859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2HqhToVN",
            "FIO859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2HqhTo",
            "FIO0OIl",
        ] {
            assert_eq!(
                PublicKey::parse(bad).unwrap_err().code,
                ErrorCode::BadPublicKey,
                "{bad}"
            );
        }
        // Valid checksum, but x is not on the curve (x = 5 has no square root... try a few).
        let mut found = false;
        for x in 1u8..=40 {
            let mut k33 = [0u8; 33];
            k33[0] = 2;
            k33[32] = x;
            if secp256k1::PublicKey::from_slice(&k33).is_err() {
                let check = ripemd160_parts(&[&k33]);
                let mut raw = k33.to_vec();
                raw.extend_from_slice(&check[..4]);
                let s = format!("FIO{}", bs58::encode(raw).into_string());
                let err = PublicKey::parse(&s).unwrap_err();
                assert_eq!(err.code, ErrorCode::BadPublicKey);
                assert!(err.message.contains("curve"));
                found = true;
                break;
            }
        }
        assert!(found);
    }
}
