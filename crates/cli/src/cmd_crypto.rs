use crate::util::{print_json, PrivateKeyArgs};
use clap::Args;
use fio_l2_protocol::cipher::{decrypt_content_between, encrypt_content, random_iv, shared_secret};
use fio_l2_protocol::PublicKey;

#[derive(Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub key: PrivateKeyArgs,
    /// The other side's (encrypt) public key, FIO... or PUB_K1_...
    #[arg(long)]
    pub public_key: String,
    /// new_funds_content, record_obt_data_content, sign_request_content,
    /// pub_address_request_content or text_message_content.
    #[arg(long)]
    pub content_type: String,
    /// 16-byte IV as hex; random when absent (fixed IVs are for test vectors only).
    #[arg(long)]
    pub iv: Option<String>,
    /// The content as a JSON object with the type's fields.
    pub content_json: String,
}

#[derive(Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub key: PrivateKeyArgs,
    /// The other side's (encrypt) public key.
    #[arg(long)]
    pub public_key: String,
    /// The content type the cipher text holds.
    #[arg(long)]
    pub content_type: String,
    /// The base64 cipher text.
    pub base64: String,
}

pub fn encrypt(a: EncryptArgs) -> Result<(), String> {
    let private = a.key.load()?;
    let public = PublicKey::parse(&a.public_key).map_err(|e| e.to_string())?;
    let iv = match a.iv {
        Some(h) => hex::decode(h.trim())
            .ok()
            .and_then(|v| <[u8; 16]>::try_from(v).ok())
            .ok_or("--iv must be 32 hex digits (16 bytes)")?,
        None => random_iv(),
    };
    let content: serde_json::Value =
        serde_json::from_str(&a.content_json).map_err(|e| format!("content is not JSON: {e}"))?;
    let secret = shared_secret(&private, &public);
    let b64 =
        encrypt_content(&secret, &a.content_type, &content, &iv).map_err(|e| e.to_string())?;
    println!("{b64}");
    Ok(())
}

pub fn decrypt(a: DecryptArgs) -> Result<(), String> {
    let private = a.key.load()?;
    let public = PublicKey::parse(&a.public_key).map_err(|e| e.to_string())?;
    let v = decrypt_content_between(&private, &public, &a.content_type, a.base64.trim())
        .map_err(|e| e.to_string())?;
    print_json(&v)
}
