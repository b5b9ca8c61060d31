use crate::util::{print_json, PrivateKeyArgs};
use clap::Subcommand;
use fio_l2_protocol::cipher::{hash_a, shared_secret};
use fio_l2_protocol::{PublicKey, Signature};
use serde_json::json;

#[derive(Subcommand)]
pub enum SigCommand {
    /// Sign a 32-byte digest as fiojs `Ecc.signHash` does; prints {"signature"}.
    Sign {
        #[command(flatten)]
        key: PrivateKeyArgs,
        /// The digest, 64 hex digits.
        #[arg(long)]
        digest: String,
    },
    /// Verify a SIG_K1_ signature over a digest against a public key; prints {"valid":true} or fails.
    Verify {
        #[arg(long)]
        digest: String,
        #[arg(long)]
        public_key: String,
        signature: String,
    },
    /// Recover the public key of a SIG_K1_ signature over a digest; prints {"public_key"}.
    Recover {
        #[arg(long)]
        digest: String,
        signature: String,
    },
    /// The ECDH shared secret and FIP-5 hashA of DATA_HEX under it;
    /// prints {"shared_secret","hash_a"}.
    SharedSecret {
        #[command(flatten)]
        key: PrivateKeyArgs,
        #[arg(long)]
        public_key: String,
        /// Data for hashA, hex (empty by default).
        #[arg(long, default_value = "")]
        data: String,
    },
}

fn digest(h: &str) -> Result<[u8; 32], String> {
    hex::decode(h.trim())
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| "--digest must be 64 hex digits".to_string())
}

pub fn run(cmd: SigCommand) -> Result<(), String> {
    let e = |e: fio_l2_protocol::Error| e.to_string();
    match cmd {
        SigCommand::Sign { key, digest: d } => {
            let sig = key.load()?.sign_digest(&digest(&d)?);
            print_json(&json!({"signature": sig.to_string()}))
        }
        SigCommand::Verify {
            digest: d,
            public_key,
            signature,
        } => {
            let key = PublicKey::parse(&public_key).map_err(e)?;
            Signature::parse(&signature)
                .map_err(e)?
                .verify(&digest(&d)?, &key)
                .map_err(e)?;
            print_json(&json!({"valid": true}))
        }
        SigCommand::Recover {
            digest: d,
            signature,
        } => {
            let key = Signature::parse(&signature)
                .map_err(e)?
                .recover(&digest(&d)?)
                .map_err(e)?;
            print_json(&json!({"public_key": key.to_fio_string()}))
        }
        SigCommand::SharedSecret {
            key,
            public_key,
            data,
        } => {
            let public = PublicKey::parse(&public_key).map_err(e)?;
            let data = hex::decode(data.trim()).map_err(|_| "--data must be hex")?;
            let s = shared_secret(&key.load()?, &public);
            print_json(
                &json!({"shared_secret": hex::encode(s), "hash_a": hex::encode(hash_a(&s, &data))}),
            )
        }
    }
}
