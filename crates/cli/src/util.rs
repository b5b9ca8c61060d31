//! Small helpers shared by the commands: key loading, bounded stdin, output.

use clap::Args;
use fio_l2_protocol::PrivateKey;
use std::io::Read;

/// Where a private key comes from. The flag is convenient for tests and
/// vectors, but argv is visible to other local users, so a file or the
/// environment is preferred.
#[derive(Args, Clone, Debug)]
pub struct PrivateKeyArgs {
    /// Private key (WIF or PVT_K1_). Prefer --private-key-file or FIO_L2_PRIVATE_KEY.
    #[arg(long, env = "FIO_L2_PRIVATE_KEY", hide_env_values = true)]
    pub private_key: Option<String>,
    /// File holding the private key (first line, WIF or PVT_K1_).
    #[arg(long, conflicts_with = "private_key")]
    pub private_key_file: Option<std::path::PathBuf>,
}

impl PrivateKeyArgs {
    pub fn load(&self) -> Result<PrivateKey, String> {
        let text = match (&self.private_key, &self.private_key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read private key file {}: {e}", path.display()))?,
            (None, None) => {
                return Err("a private key is required: --private-key-file, FIO_L2_PRIVATE_KEY or --private-key".into())
            }
        };
        let first = text.lines().next().unwrap_or_default();
        PrivateKey::parse(first).map_err(|e| e.to_string())
    }
}

/// Largest envelope read from stdin; far above any valid message.
pub const MAX_STDIN: u64 = 4 << 20;

pub fn read_stdin() -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(format!("input is larger than {MAX_STDIN} bytes"));
    }
    Ok(buf)
}

pub fn print_json(v: &serde_json::Value) -> Result<(), String> {
    println!("{}", serde_json::to_string(v).map_err(|e| e.to_string())?);
    Ok(())
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
