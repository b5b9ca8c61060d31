//! Crash safety: concurrent submitters keep sending while the node process is
//! killed with SIGKILL and restarted on the same data dir, several times.
//! Every envelope the node acknowledged (201 or 200) must be in the inbox
//! afterwards, byte-identical; nothing is stored that was never sent.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const CYCLES: usize = 6;
const SUBMITTERS: usize = 4;

#[derive(Default)]
struct Log {
    /// id -> envelope JSON (with id) of every acknowledged envelope.
    acked: Mutex<HashMap<String, Value>>,
    /// Every envelope ever sent (acknowledged or not).
    sent: Mutex<HashMap<String, Value>>,
    acks: AtomicUsize,
    failures: AtomicUsize,
    /// 200 "existing" answers to a resend after a failed request.
    existing_after_failure: AtomicUsize,
}

struct Shared {
    url: RwLock<String>,
    chain_id: [u8; 32],
    stop: AtomicBool,
    log: Log,
}

async fn submitter(n: usize, sh: Arc<Shared>, from: Party, to: Vec<Party>) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    // Envelopes whose request failed: resent as they are to the next node.
    let mut pending: Vec<Value> = vec![];
    let mut i = 0usize;
    let mut retrying = false;
    while !sh.stop.load(Ordering::Relaxed) {
        if pending.is_empty() {
            // Submitter 0 sends arrays of 4; the others single envelopes.
            let k = if n == 0 { 4 } else { 1 };
            for _ in 0..k {
                i += 1;
                let m = signed(
                    &from,
                    &to[i % to.len()],
                    &format!("s{n} m{i}"),
                    &sh.chain_id,
                );
                let v = m.to_json_value(true);
                sh.log.sent.lock().unwrap().insert(m.id_hex(), v.clone());
                pending.push(v);
            }
        }
        let url = sh.url.read().unwrap().clone();
        let body = if n == 0 {
            json!(pending
                .iter()
                .map(|v| {
                    let mut v = v.clone();
                    v.as_object_mut().unwrap().remove("id");
                    v
                })
                .collect::<Vec<_>>())
        } else {
            let mut v = pending[0].clone();
            v.as_object_mut().unwrap().remove("id");
            v
        };
        let r = c
            .post(format!("{url}/v1/messages"))
            .json(&body)
            .send()
            .await;
        let answer = match r {
            Ok(r) => {
                let st = r.status().as_u16();
                r.json::<Value>().await.ok().map(|v| (st, v))
            }
            Err(_) => None,
        };
        let results: Vec<(u16, Value)> = match answer {
            Some((200, v)) if n == 0 => v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["http_status"].as_u64().unwrap() as u16, r.clone()))
                .collect(),
            Some((st, v)) if n != 0 => vec![(st, v)],
            _ => {
                sh.log.failures.fetch_add(1, Ordering::Relaxed);
                retrying = true;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        assert_eq!(results.len(), pending.len());
        let mut still = vec![];
        for ((st, v), env) in results.into_iter().zip(pending.drain(..)) {
            match st {
                200 | 201 => {
                    let id = env["id"].as_str().unwrap().to_string();
                    assert_eq!(v["id"].as_str(), Some(id.as_str()), "{v}");
                    let want = if st == 201 { "accepted" } else { "existing" };
                    assert_eq!(v["status"], want, "{v}");
                    if st == 200 && retrying {
                        sh.log
                            .existing_after_failure
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    sh.log.acked.lock().unwrap().insert(id, env);
                    sh.log.acks.fetch_add(1, Ordering::Relaxed);
                }
                503 => still.push(env),
                other => panic!("unexpected answer {other}: {v}"),
            }
        }
        pending = still;
        retrying = false;
    }
}

/// Every acknowledged envelope is stored, byte-identical; nothing unknown is stored.
async fn check_all_acked(
    c: &reqwest::Client,
    node: &Node,
    owners: &[Party],
    log: &Log,
    when: &str,
    quiet: bool,
) {
    // Acknowledged before the read must be listed; listed must have been sent
    // before the read ended (submitters keep going meanwhile).
    let acked = log.acked.lock().unwrap().clone();
    let mut stored: HashMap<String, Value> = HashMap::new();
    for owner in owners {
        for e in inbox_all(c, node, owner).await {
            let env = e["envelope"].clone();
            assert_eq!(env["recipient"], owner.address.as_str());
            let id = env["id"].as_str().unwrap().to_string();
            assert!(
                stored.insert(id.clone(), env).is_none(),
                "{when}: {id} listed twice"
            );
        }
    }
    let sent = log.sent.lock().unwrap().clone();
    let mut missing = 0;
    for (id, env) in &acked {
        match stored.get(id) {
            None => missing += 1,
            Some(got) => assert_eq!(
                serde_json::to_string(got).unwrap(),
                serde_json::to_string(env).unwrap(),
                "{when}: stored envelope {id} differs from the one sent"
            ),
        }
    }
    assert_eq!(
        missing,
        0,
        "{when}: {missing} of {} acknowledged messages lost",
        acked.len()
    );
    for id in stored.keys() {
        assert!(sent.contains_key(id), "{when}: stored {id} was never sent");
    }
    if quiet {
        assert_eq!(health_count(c, &node.url).await, stored.len() as u64);
        assert_eq!(
            stored.len(),
            acked.len(),
            "{when}: stored but never acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_restarts() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut node = Node::start(&data, &[]);
    let c = http();
    let alice = Party::new("alice", "alice@dev");
    let bob = Party::new("bob", "bob@dev");
    let carol = Party::new("carol", "carol@dev");
    for p in [&alice, &bob, &carol] {
        register(&c, &node.url, p).await;
    }
    let owners = vec![bob.clone(), carol.clone()];
    let sh = Arc::new(Shared {
        url: RwLock::new(node.url.clone()),
        chain_id: node.chain_id,
        stop: AtomicBool::new(false),
        log: Log::default(),
    });
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|n| {
            let from = if n % 2 == 0 {
                alice.clone()
            } else {
                carol.clone()
            };
            let to = if n % 2 == 0 {
                vec![bob.clone(), carol.clone()]
            } else {
                vec![bob.clone()]
            };
            tokio::spawn(submitter(n, sh.clone(), from, to))
        })
        .collect();

    for cycle in 0..CYCLES {
        // Let some traffic through this incarnation, then kill it mid-flight.
        let before = sh.log.acks.load(Ordering::Relaxed);
        let target = before + 300;
        let t0 = Instant::now();
        loop {
            let acks = sh.log.acks.load(Ordering::Relaxed);
            let waited = t0.elapsed();
            // Enough traffic, or 8 s of it; at most 30 s waiting for the first ack.
            if acks >= target
                || (waited > Duration::from_secs(8) && acks > before)
                || waited > Duration::from_secs(30)
            {
                break;
            }
            assert!(
                !tasks.iter().any(|t| t.is_finished()),
                "a submitter stopped (panicked)"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 150)).await;
        let node_id = node.node_id.clone();
        node.kill9();
        let acked_at_kill = sh.log.acks.load(Ordering::Relaxed);
        assert!(
            acked_at_kill > before,
            "cycle {cycle}: nothing was acknowledged by this incarnation"
        );
        node = Node::start(&data, &[]);
        assert_eq!(
            node.chain_id, sh.chain_id,
            "dev chain id changed on restart"
        );
        assert_eq!(node.node_id, node_id, "node id changed on restart");
        *sh.url.write().unwrap() = node.url.clone();
        // What was acknowledged before the kill is all there (submitters keep going).
        check_all_acked(
            &c,
            &node,
            &owners,
            &sh.log,
            &format!("after kill {cycle}"),
            false,
        )
        .await;
    }

    sh.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("submitter panicked");
    }
    check_all_acked(&c, &node, &owners, &sh.log, "at the end", true).await;
    let acked = sh.log.acked.lock().unwrap().len();
    eprintln!(
        "{CYCLES} SIGKILLs, {acked} acknowledged, {} failed requests, {} resends answered existing, {:?}",
        sh.log.failures.load(Ordering::Relaxed),
        sh.log.existing_after_failure.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(
        acked >= CYCLES * 150 / 2,
        "too little traffic to mean anything: {acked}"
    );
}
