//! Owner proofs: how the owner of a FIO Address proves it to a node before
//! reading, acknowledging or subscribing to its inbox (docs/api.md, "Owner proof").
//!
//! The wallet signs, with the key that owns the address, the digest
//! `sha256(text)` of the UTF-8 text
//!
//! ```text
//! FIO-L2-AUTH\n<chain_id hex>\n<node_id>\n<address>\n<METHOD>\n<path?query>\n<time>\n<nonce>\n<sha256 hex of body>
//! ```
//!
//! and sends the parts in `X-FIO-L2-*` headers. The proof is bound to this
//! node (node id), this chain, this exact request (method, path, query, body),
//! a short time window, and is single-use (the nonce is remembered for the window).

use crate::error::ApiError;
use axum::http::{HeaderMap, StatusCode};
use fio_l2_protocol::hash::{sha256, sha256_parts};
use fio_l2_protocol::{PrivateKey, PublicKey, Signature};
use std::collections::HashMap;
use std::sync::Mutex;

pub const H_ADDRESS: &str = "x-fio-l2-address";
pub const H_KEY: &str = "x-fio-l2-key";
pub const H_NODE: &str = "x-fio-l2-node";
pub const H_TIME: &str = "x-fio-l2-time";
pub const H_NONCE: &str = "x-fio-l2-nonce";
pub const H_SIGNATURE: &str = "x-fio-l2-signature";

/// What a request claims; checked by `verify` (signature, window, node,
/// replay) and then against the chain by the caller (ownership).
#[derive(Clone, Debug)]
pub struct OwnerProof {
    pub address: String,
    pub key: PublicKey,
    pub node_id: String,
    pub time: u64,
    pub nonce: String,
    pub signature: Signature,
}

/// Everything the signature covers besides the headers' own values.
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

pub fn proof_text(
    chain_id: &[u8; 32],
    node_id: &str,
    address: &str,
    time: u64,
    nonce: &str,
    req: &RequestParts,
) -> String {
    format!(
        "FIO-L2-AUTH\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        hex::encode(chain_id),
        node_id,
        address,
        req.method,
        req.path_and_query,
        time,
        nonce,
        hex::encode(sha256(req.body))
    )
}

pub fn proof_digest(text: &str) -> [u8; 32] {
    sha256_parts(&[text.as_bytes()])
}

/// Client side: the headers of a proof for one request.
pub fn make_proof_headers(
    key: &PrivateKey,
    chain_id: &[u8; 32],
    node_id: &str,
    address: &str,
    time: u64,
    req: &RequestParts,
) -> Vec<(&'static str, String)> {
    let mut nonce = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
    let nonce = hex::encode(nonce);
    let text = proof_text(chain_id, node_id, address, time, &nonce, req);
    let sig = key.sign_digest(&proof_digest(&text));
    vec![
        (H_ADDRESS, address.to_string()),
        (H_KEY, key.public_key().to_fio_string()),
        (H_NODE, node_id.to_string()),
        (H_TIME, time.to_string()),
        (H_NONCE, nonce),
        (H_SIGNATURE, sig.to_string()),
    ]
}

fn unauthorized(code: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, msg)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    h.get(name)
        .ok_or_else(|| {
            unauthorized(
                "proof_missing",
                format!("owner proof header {name} is missing"),
            )
        })?
        .to_str()
        .map_err(|_| unauthorized("proof_malformed", format!("header {name} is not ASCII")))
}

/// Parse the proof headers (cheap: no signature work yet).
pub fn parse_headers(h: &HeaderMap) -> Result<OwnerProof, ApiError> {
    let address = header(h, H_ADDRESS)?.to_string();
    let key = PublicKey::parse(header(h, H_KEY)?)
        .map_err(|e| unauthorized("proof_malformed", format!("{H_KEY}: {}", e.message)))?;
    let node_id = header(h, H_NODE)?.to_string();
    let time = header(h, H_TIME)?
        .parse::<u64>()
        .map_err(|_| unauthorized("proof_malformed", format!("{H_TIME} must be unix seconds")))?;
    let nonce = header(h, H_NONCE)?.to_string();
    if nonce.len() < 16 || nonce.len() > 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unauthorized(
            "proof_malformed",
            format!("{H_NONCE} must be 16 to 64 hex digits"),
        ));
    }
    let signature = Signature::parse(header(h, H_SIGNATURE)?)
        .map_err(|e| unauthorized("proof_malformed", format!("{H_SIGNATURE}: {}", e.message)))?;
    Ok(OwnerProof {
        address,
        key,
        node_id,
        time,
        nonce,
        signature,
    })
}

/// Single-use nonces, remembered for twice the window, bounded in number.
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, u64>>,
    capacity: usize,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            seen: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Records the nonce; false if it was already used.
    fn first_use(&self, key: String, forget_at: u64, now: u64) -> Result<bool, ApiError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= self.capacity {
            seen.retain(|_, t| *t > now);
            if seen.len() >= self.capacity {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "too many recent proofs; retry shortly",
                )
                .retry_after(5));
            }
        }
        Ok(seen.insert(key, forget_at).is_none())
    }
}

/// What a node checks a proof against.
pub struct ProofCheck<'a> {
    pub chain_id: &'a [u8; 32],
    pub node_id: &'a str,
    /// Allowed distance of the proof's time from `now`, seconds.
    pub window: u32,
    pub replay: &'a ReplayGuard,
}

impl ProofCheck<'_> {
    /// Checks in order of cost: node, window, address, signature, then replay.
    /// Ownership on the chain is the caller's next step.
    pub fn verify(
        &self,
        proof: &OwnerProof,
        path_address: &str,
        now: u64,
        req: &RequestParts,
    ) -> Result<(), ApiError> {
        let window = u64::from(self.window);
        if proof.node_id != self.node_id {
            return Err(unauthorized(
                "proof_wrong_node",
                "the proof was made for another node",
            ));
        }
        if proof.time.saturating_add(window) < now || proof.time > now + window {
            return Err(unauthorized(
                "proof_expired",
                format!("the proof's time is more than {window} s from the node's clock"),
            ));
        }
        if proof.address != path_address {
            return Err(unauthorized(
                "proof_address_mismatch",
                "the proof is for another address",
            ));
        }
        let text = proof_text(
            self.chain_id,
            self.node_id,
            &proof.address,
            proof.time,
            &proof.nonce,
            req,
        );
        proof
            .signature
            .verify(&proof_digest(&text), &proof.key)
            .map_err(|_| {
                unauthorized(
                    "proof_bad_signature",
                    "the proof's signature does not match this request and key",
                )
            })?;
        let replay_key = format!("{}/{}", proof.address, proof.nonce);
        if !self
            .replay
            .first_use(replay_key, now + 2 * window + 1, now)?
        {
            return Err(unauthorized(
                "proof_replayed",
                "this proof was already used",
            ));
        }
        Ok(())
    }
}
