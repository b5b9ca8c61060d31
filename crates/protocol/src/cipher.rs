//! The FIO content cipher, as FIO Request content is encrypted today
//! (fio-standards.md section 4), and FIP-5 hashA.

use crate::content::content_type;
use crate::error::{Error, ErrorCode, Result};
use crate::hash::{hmac_sha1, sha512};
use crate::keys::{PrivateKey, PublicKey};
use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Standard base64 with padding, strict on decode (canonical trailing bits).
pub const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `SHA-512(x)` where x is the x coordinate of `d_A * Q_B` in big-endian
/// form **without leading zero bytes**, exactly as fiojs computes it (its
/// `getSharedSecret` hashes `affineX.toBuffer(...)` unpadded). For the 255 of
/// 256 key pairs whose x has no leading zero this is the 32-byte x of
/// fio-standards.md section 4; see docs/protocol-notes.md for the rest.
pub fn shared_secret(private: &PrivateKey, public: &PublicKey) -> [u8; 64] {
    shared_secrets(private, public).0
}

/// The fiojs secret, and the secret of the full 32-byte x when the two differ
/// (x below 2^248). Decryption tries both: the MAC tells which one the sender used.
pub fn shared_secrets(private: &PrivateKey, public: &PublicKey) -> ([u8; 64], Option<[u8; 64]>) {
    let point = secp256k1::ecdh::shared_secret_point(&public.0, &private.0);
    let x = &point[..32];
    let zeros = x.iter().take_while(|b| **b == 0).count();
    if zeros == 0 {
        (sha512(x), None)
    } else {
        (sha512(&x[zeros..]), Some(sha512(x)))
    }
}

/// Decrypt content between `private` and `public` under either form of the
/// shared secret (fiojs's first); the one whose MAC verifies wins.
pub fn decrypt_content_between(
    private: &PrivateKey,
    public: &PublicKey,
    type_name: &str,
    b64: &str,
) -> Result<serde_json::Value> {
    let (fiojs_form, padded_form) = shared_secrets(private, public);
    match decrypt_content(&fiojs_form, type_name, b64) {
        Err(e) if e.code == ErrorCode::MacMismatch && padded_form.is_some() => {
            decrypt_content(&padded_form.expect("checked"), type_name, b64)
        }
        other => other,
    }
}

fn split_keys(secret: &[u8; 64]) -> ([u8; 32], [u8; 32]) {
    let k = sha512(secret);
    (
        k[..32].try_into().expect("32"),
        k[32..].try_into().expect("32"),
    )
}

/// `IV || AES-256-CBC(Ke, IV, PKCS#7(plaintext)) || HMAC-SHA256(Km, IV || C)`.
pub fn encrypt_bytes(secret: &[u8; 64], plaintext: &[u8], iv: &[u8; 16]) -> Vec<u8> {
    let (ke, km) = split_keys(secret);
    let c = Aes256CbcEnc::new(&ke.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let mut out = Vec::with_capacity(16 + c.len() + 32);
    out.extend_from_slice(iv);
    out.extend_from_slice(&c);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&km).expect("any key length");
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// The cipher text shape the protocol requires: IV, at least one block, MAC.
pub fn check_cipher_shape(len: usize) -> Result<()> {
    if len < 64 || !(len - 48).is_multiple_of(16) {
        return Err(Error::new(
            ErrorCode::BadCipherText,
            format!("cipher text must be IV(16) + n*16 + MAC(32) bytes with n >= 1, got {len}"),
        ));
    }
    Ok(())
}

/// Checks the MAC first, in constant time, then decrypts.
pub fn decrypt_bytes(secret: &[u8; 64], data: &[u8]) -> Result<Vec<u8>> {
    check_cipher_shape(data.len())?;
    let (ke, km) = split_keys(secret);
    let (body, tag) = data.split_at(data.len() - 32);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&km).expect("any key length");
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| {
        Error::new(
            ErrorCode::MacMismatch,
            "MAC does not match: wrong keys or altered cipher text",
        )
    })?;
    let (iv, c) = body.split_at(16);
    Aes256CbcDec::new(&ke.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(c)
        .map_err(|_| Error::new(ErrorCode::BadPadding, "bad PKCS#7 padding"))
}

pub fn random_iv() -> [u8; 16] {
    let mut iv = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut iv);
    iv
}

/// Serialize `content` as `type_name`, encrypt, base64: an envelope's `content`.
pub fn encrypt_content(
    secret: &[u8; 64],
    type_name: &str,
    content: &serde_json::Value,
    iv: &[u8; 16],
) -> Result<String> {
    let plain = content_type(type_name)?.pack_json(content)?;
    Ok(BASE64.encode(encrypt_bytes(secret, &plain, iv)))
}

/// base64 -> MAC check -> decrypt -> deserialize as `type_name`.
pub fn decrypt_content(secret: &[u8; 64], type_name: &str, b64: &str) -> Result<serde_json::Value> {
    let t = content_type(type_name)?;
    let data = BASE64.decode(b64).map_err(|e| {
        Error::new(
            ErrorCode::BadBase64,
            format!("content is not standard base64: {e}"),
        )
    })?;
    let plain = decrypt_bytes(secret, &data)?;
    t.unpack_json(&plain)
}

/// FIP-5 hashA: `HMAC-SHA1(key = shared_secret, data)[0..16]`.
pub fn hash_a(secret: &[u8; 64], data: &[u8]) -> [u8; 16] {
    hmac_sha1(secret, data)[..16].try_into().expect("16")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn raw_vector() {
        let secret: [u8; 64] = h("02332627b9325cb70510a70f0f6be4bcb008fbbc7893ca51dedf5bf46aa740c0fc9d3fbd737d09a3c4046d221f4f1a323f515332c3fef46e7f075db561b1a2c9");
        let iv: [u8; 16] = h("f300888ca4f512cebdc0020ff0f7224c");
        let out = encrypt_bytes(&secret, b"secret message", &iv);
        assert_eq!(hex::encode(&out), "f300888ca4f512cebdc0020ff0f7224c7f896315e90e172bed65d005138f224da7301d5563614e3955750e4480aabf7753f44b4975308aeb8e23c31e114962ab");
        assert_eq!(decrypt_bytes(&secret, &out).unwrap(), b"secret message");
        let mut tampered = out.clone();
        tampered[20] ^= 1;
        assert_eq!(
            decrypt_bytes(&secret, &tampered).unwrap_err().code,
            ErrorCode::MacMismatch
        );
    }

    #[test]
    fn alice_bob_vector() {
        let alice = PrivateKey::from_seed("alice");
        let bob = PrivateKey::from_seed("bob");
        let s1 = shared_secret(&alice, &bob.public_key());
        let s2 = shared_secret(&bob, &alice.public_key());
        assert_eq!(s1, s2);
        assert_eq!(hex::encode(s1), "a71b4ec5a9577926a1d2aa1d9d99327fd3b68f6a1ea597200a0d890bd3331df300a2d49fec0b2b3e6969ce9263c5d6cf47c191c1ef149373ecc9f0d98116b598");
        let iv: [u8; 16] = h("f300888ca4f512cebdc0020ff0f7224c");
        let content = serde_json::json!({"payee_public_address":"purse.alice","amount":"1","chain_code":"FIO","token_code":"FIO"});
        let b64 = encrypt_content(&s1, "new_funds_content", &content, &iv).unwrap();
        assert_eq!(b64, "8wCIjKT1Es69wAIP8PciTOB8F09qqDGdsq0XriIWcOkqpZe9q4FwKu3SGILtnAWtJGETbcAqd3zX7NDptPUQsS1ZfEPiK6Hv0nJyNbxwiQc=");
        let back = decrypt_content(&s2, "new_funds_content", &b64).unwrap();
        assert_eq!(back["payee_public_address"], "purse.alice");
        assert!(back["memo"].is_null());
    }

    #[test]
    fn leading_zero_x_follows_fiojs() {
        // Found by the fiojs interop test: x(alice, seed "zero-x-174") starts
        // with 0x00; fiojs hashes the 31 bytes after it.
        let alice = PrivateKey::from_seed("alice");
        let other = PrivateKey::from_seed("zero-x-174");
        let (fiojs_form, padded) = shared_secrets(&alice, &other.public_key());
        assert_eq!(hex::encode(fiojs_form), "0deb7a6140a706ad9b24402e67a39813a96155d3246456bb0b7e853f212a14644b006ae1975d3c1201ae5d2d5d937059f85baa45e9a9142f522ffe9f104c34ea");
        assert_eq!(hex::encode(padded.unwrap()), "e65c5fa653ae4fb29d477d3419b8519f64b5e9f752b2352e024d6d8936ca2ef93d10f8bf3eef669e35e4049b3ea352e6506d41701e7175f6a97292298874a79b");
        assert_eq!(shared_secret(&other, &alice.public_key()), fiojs_form);
        // Content made with either form decrypts.
        let c = serde_json::json!({"body": "hi"});
        for secret in [fiojs_form, padded.unwrap()] {
            let b64 = encrypt_content(&secret, "text_message_content", &c, &[9u8; 16]).unwrap();
            let back =
                decrypt_content_between(&other, &alice.public_key(), "text_message_content", &b64)
                    .unwrap();
            assert_eq!(back["body"], "hi");
        }
        // Keys without the leading zero have one form only.
        assert!(
            shared_secrets(&alice, &PrivateKey::from_seed("bob").public_key())
                .1
                .is_none()
        );
    }

    #[test]
    fn hash_a_vectors() {
        let k = PrivateKey::from_seed("");
        let s = shared_secret(&k, &k.public_key());
        assert_eq!(
            hex::encode(hash_a(&s, b"")),
            "7a5de2d59c72b94c67a192a9009484ef"
        );
        assert_eq!(
            hex::encode(hash_a(&s, &k.public_key().compressed())),
            "2521bccef77d48793a7a80716e79a46d"
        );
    }

    #[test]
    fn shape_errors() {
        let s = [7u8; 64];
        assert_eq!(
            decrypt_bytes(&s, &[0u8; 63]).unwrap_err().code,
            ErrorCode::BadCipherText
        );
        assert_eq!(
            decrypt_bytes(&s, &[0u8; 65]).unwrap_err().code,
            ErrorCode::BadCipherText
        );
        assert_eq!(
            decrypt_content(&s, NEW, "!!").unwrap_err().code,
            ErrorCode::BadBase64
        );
    }
    const NEW: &str = "new_funds_content";
}
