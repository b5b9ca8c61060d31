//! Pieces the benchmarks share: test parties and a fixed-size FIO Request.

use base64::Engine;
use fio_l2_protocol::cipher::{encrypt_bytes, BASE64};
use fio_l2_protocol::{Message, PrivateKey, PublicKey};
use std::sync::OnceLock;

/// A key and the address it owns; the public key is derived once (deriving
/// it per message was a tenth of benchmark set-up time).
#[derive(Clone)]
pub struct Party {
    pub key: PrivateKey,
    pub public: PublicKey,
    pub address: String,
}

impl Party {
    pub fn new(seed: &str, address: &str) -> Party {
        let key = PrivateKey::from_seed(seed);
        Party {
            public: key.public_key(),
            key,
            address: address.to_string(),
        }
    }
}

/// Registers `p.address` to `p.public` on a dev chain (`/v1/dev/*` at `url`:
/// a `fio-l2 devchain` or a `--dev` node).
pub async fn register(http: &reqwest::Client, url: &str, p: &Party) -> Result<(), String> {
    let r = http
        .post(format!("{url}/v1/dev/register_address"))
        .json(&serde_json::json!({"address": p.address, "owner_public_key": p.public.to_fio_string()}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!(
            "register {}: {}",
            p.address,
            r.text().await.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Cipher text of a 200-byte plaintext: the size of a typical FIO Request.
/// Not decryptable by anyone (fixed secret); nodes never decrypt.
fn content() -> &'static str {
    static CONTENT: OnceLock<String> = OnceLock::new();
    CONTENT.get_or_init(|| BASE64.encode(encrypt_bytes(&[1u8; 64], &[7u8; 200], &[2u8; 16])))
}

/// An unsigned `new_funds_content` envelope living one day from `created`.
pub fn funds_message(
    from: &Party,
    recipient: &str,
    recipient_key: PublicKey,
    nonce: u64,
    created: u32,
) -> Message {
    Message {
        version: 1,
        content_type: "new_funds_content".into(),
        sender: from.address.clone(),
        recipient: recipient.to_string(),
        sender_key: from.public,
        sender_encrypt_key: from.public,
        recipient_encrypt_key: recipient_key,
        created,
        expires: created + 86_400,
        nonce,
        content: content().to_string(),
    }
}

/// Jiffies of all CPUs so far from /proc/stat: (stolen by the hypervisor,
/// total). Zero where /proc is missing.
pub fn cpu_steal() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    // user nice system idle iowait irq softirq steal guest guest_nice; guest
    // time is already counted in user.
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (f.get(7).copied().unwrap_or(0), f.iter().sum())
}

/// The share of CPU time the hypervisor took from this machine between two
/// [`cpu_steal`] readings, in percent (other tenants of the host: a machine
/// losing it runs everything here slower and in bursts).
pub fn steal_percent(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    after.0.saturating_sub(before.0) as f64 * 100.0 / total as f64
}

/// CPU time (user + system) used by this whole process so far, every thread
/// included (also threads that have exited).
pub fn process_cpu() -> std::time::Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) cannot fail");
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU time used so far by this process's live threads whose name starts
/// with `prefix` (Linux: /proc/self/task/*/comm and schedstat, nanoseconds).
/// Threads that exited are not counted: keep the measured threads alive.
pub fn threads_cpu(prefix: &str) -> std::time::Duration {
    threads_sched(prefix).0
}

/// For the threads whose name starts with `prefix`: CPU time, and time spent
/// runnable but waiting for a core (the first two fields of
/// /proc/self/task/*/schedstat). Zero where /proc is missing.
pub fn threads_sched(prefix: &str) -> (std::time::Duration, std::time::Duration) {
    let (mut cpu, mut wait) = (0u64, 0u64);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Default::default();
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let mut f = stat
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        cpu += f.next().unwrap_or(0);
        wait += f.next().unwrap_or(0);
    }
    (
        std::time::Duration::from_nanos(cpu),
        std::time::Duration::from_nanos(wait),
    )
}
