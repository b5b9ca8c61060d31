//! `fio-l2 bench`: throughput of the protocol's hot operations on one core,
//! each printed with its ratio to plain libsecp256k1 ECDSA verification
//! measured in the same run (the machine is shared and noisy; ratios travel,
//! absolute rates do not).

use clap::{Args, Subcommand};
use fio_l2_protocol::cipher::{decrypt_bytes, encrypt_bytes, shared_secret};
use fio_l2_protocol::envelope::Message;
use fio_l2_protocol::hash::sha256;
use fio_l2_protocol::{PrivateKey, SignedMessage, TimePolicy};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Sign, verify, recover, cipher and whole-envelope verification per second on one core.
    Crypto {
        /// Seconds spent on each operation.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Verify-only rate on all cores, durable HTTP ingest into a real node, inbox latency with a large store.
    Node(crate::bench_node::NodeBenchArgs),
    /// N nodes in a mesh: propagation latency, repair bytes in step, catch-up time and bytes.
    Replication(crate::bench_replication::ReplicationBenchArgs),
    /// Attacks against a real node alongside a legitimate sender (docs/spam.md).
    Spam(crate::bench_spam::SpamBenchArgs),
}

pub fn run(a: BenchArgs) -> Result<(), String> {
    match a.what {
        BenchCommand::Crypto { seconds } => crypto(Duration::from_secs_f64(seconds.max(0.05))),
        BenchCommand::Node(a) => crate::bench_node::run(a),
        BenchCommand::Replication(a) => crate::bench_replication::run(a),
        BenchCommand::Spam(a) => crate::bench_spam::run(a),
    }
}

/// Runs `op` in batches until `budget` has passed; returns operations per second.
fn rate(budget: Duration, mut op: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            op(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn crypto(budget: Duration) -> Result<(), String> {
    let alice = PrivateKey::from_seed("alice");
    let bob = PrivateKey::from_seed("bob");
    let chain_id = [0x21u8; 32];
    let secret = shared_secret(&alice, &bob.public_key());
    let content = {
        use base64::Engine;
        fio_l2_protocol::cipher::BASE64.encode(encrypt_bytes(&secret, &[7u8; 200], &[1u8; 16]))
    };
    let m = Message {
        version: 1,
        content_type: "new_funds_content".into(),
        sender: "alice@wallet".into(),
        recipient: "bob@wallet".into(),
        sender_key: alice.public_key(),
        sender_encrypt_key: alice.public_key(),
        recipient_encrypt_key: bob.public_key(),
        created: 1_795_000_000,
        expires: 1_795_600_000,
        nonce: 0,
        content,
    };
    let signed = m.sign(&alice, &chain_id).map_err(|e| e.to_string())?;
    let json = serde_json::to_vec(&signed.to_json_value(false)).map_err(|e| e.to_string())?;
    let digests: Vec<[u8; 32]> = (0..256u32).map(|i| sha256(&i.to_le_bytes())).collect();
    let sigs: Vec<_> = digests.iter().map(|d| alice.sign_digest(d)).collect();
    let pubkey = alice.public_key();
    let cipher = encrypt_bytes(&secret, &[7u8; 200], &[1u8; 16]);
    let policy = TimePolicy::default();

    type Op<'a> = (&'static str, Box<dyn FnMut(u64) + 'a>);
    let mut ops: Vec<Op> = vec![
        (
            "baseline: libsecp256k1 ECDSA verify",
            Box::new(|i| {
                let k = (i % 256) as usize;
                black_box(sigs[k].verify_ecdsa_only(&digests[k], &pubkey)).expect("valid");
            }),
        ),
        (
            "sign (fiojs-compatible, canonical)",
            Box::new(|i| {
                black_box(alice.sign_digest(&digests[(i % 256) as usize]));
            }),
        ),
        (
            "verify (recover + compare)",
            Box::new(|i| {
                let k = (i % 256) as usize;
                black_box(sigs[k].verify(&digests[k], &pubkey)).expect("valid");
            }),
        ),
        (
            "recover",
            Box::new(|i| {
                let k = (i % 256) as usize;
                black_box(sigs[k].recover(&digests[k])).expect("valid");
            }),
        ),
        (
            "envelope: parse JSON + checks 1-4",
            Box::new(|_| {
                let s = SignedMessage::from_json(black_box(&json)).expect("valid");
                s.check_offline(&chain_id, 1_795_000_000, &policy)
                    .expect("valid");
            }),
        ),
        (
            "ECDH shared secret",
            Box::new(|_| {
                black_box(shared_secret(&alice, &bob.public_key()));
            }),
        ),
        (
            "decrypt 200-byte content (MAC + AES)",
            Box::new(|_| {
                black_box(decrypt_bytes(&secret, &cipher)).expect("valid");
            }),
        ),
    ];
    // Interleave short rounds of every operation and keep each one's median,
    // so a burst of load elsewhere on the machine hits all rows alike.
    const ROUNDS: u32 = 5;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
    for _ in 0..ROUNDS {
        for (k, (_, op)) in ops.iter_mut().enumerate() {
            samples[k].push(rate(budget / ROUNDS, op));
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let baseline = medians[0];
    println!(
        "{:<40} {:>12} {:>10}",
        "operation (one core)", "ops/s", "ratio"
    );
    for ((name, _), r) in ops.iter().zip(medians) {
        println!("{:<40} {:>12.0} {:>10.2}", name, r, r / baseline);
    }
    Ok(())
}
