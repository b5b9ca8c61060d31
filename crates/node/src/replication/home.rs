//! Home-node mode (docs/replication.md, "Home nodes"). An address owner
//! publishes its preferred nodes as the FIO public address mapping
//! `FIOL2`/`NODE` (chain code, token code): one or more base URLs separated
//! by commas (the chain refuses white space in a public address). Senders' clients deliver there first; a node run
//! with `--serve-only-home` keeps only messages whose recipient lists its
//! `--public-url`.

use crate::error::ApiError;
use crate::state::NodeState;
use axum::http::StatusCode;
use fio_l2_chain::ChainError;

pub const CHAIN_CODE: &str = "FIOL2";
pub const TOKEN_CODE: &str = "NODE";

/// The URLs in a `FIOL2`/`NODE` mapping value, normalized.
pub fn parse_urls(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
        .map(super::normalize_url)
        .collect()
}

/// Admission hook (after the sender check): with `serve_only_home`, refuse a
/// message whose recipient does not name this node as a home node.
pub async fn check_recipient(state: &NodeState, recipient: &str) -> Result<(), ApiError> {
    let cfg = &state.config.replication;
    if !cfg.serve_only_home {
        return Ok(());
    }
    let me = cfg
        .public_url
        .as_deref()
        .map(super::normalize_url)
        .unwrap_or_default();
    let refuse = |why: String| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "not_home_node",
            format!("this node keeps only messages for addresses it is a home node of: {why}"),
        )
    };
    match state
        .chain
        .pub_address(recipient, CHAIN_CODE, TOKEN_CODE)
        .await
    {
        Ok(v) => {
            let urls = parse_urls(&v);
            if urls.contains(&me) {
                Ok(())
            } else {
                Err(refuse(format!(
                    "{recipient}'s home nodes are {}",
                    urls.join(", ")
                )))
            }
        }
        Err(ChainError::Unavailable(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "chain_unavailable",
            "the FIO Chain cannot be reached to find the recipient's home node",
        )
        .retry_after(5)),
        Err(_) => Err(refuse(format!(
            "{recipient} publishes no {CHAIN_CODE}/{TOKEN_CODE} mapping"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        assert_eq!(
            super::parse_urls("https://a.example/, http://b:8080 junk"),
            vec!["https://a.example", "http://b:8080"]
        );
    }
}
