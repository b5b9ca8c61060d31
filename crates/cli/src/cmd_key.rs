use crate::util::print_json;
use clap::Subcommand;
use fio_l2_protocol::{PrivateKey, PublicKey};
use serde_json::json;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a key pair: random, or sha256 of --seed as fiojs `fromSeed` does.
    /// Prints {"private_key","public_key","actor"}.
    New {
        /// Deterministic key from this text (tests and demos only: seeds are guessable).
        #[arg(long)]
        seed: Option<String>,
    },
    /// Show the public key and actor of a WIF / PVT_K1_ private key or a
    /// FIO / PUB_K1_ public key. Prints {"public_key","actor"}.
    Inspect {
        /// The key to inspect.
        key: String,
    },
}

pub fn run(cmd: KeyCommand) -> Result<(), String> {
    match cmd {
        KeyCommand::New { seed } => {
            let k = match seed {
                Some(s) => PrivateKey::from_seed(&s),
                None => PrivateKey::random(),
            };
            let p = k.public_key();
            print_json(
                &json!({"private_key": k.to_wif(), "public_key": p.to_fio_string(), "actor": p.actor()}),
            )
        }
        KeyCommand::Inspect { key } => {
            let p = if key.starts_with("FIO") || key.starts_with("PUB_K1_") {
                PublicKey::parse(&key).map_err(|e| e.to_string())?
            } else {
                PrivateKey::parse(&key)
                    .map_err(|e| e.to_string())?
                    .public_key()
            };
            print_json(&json!({"public_key": p.to_fio_string(), "actor": p.actor()}))
        }
    }
}
