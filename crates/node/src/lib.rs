//! The fio-l2 relay node: accepts signed messages, checks them against the
//! FIO Chain, stores them durably and serves each inbox to its owner.
//! See ARCHITECTURE.md for the codemap and docs/api.md for the HTTP API.

pub mod admission;
pub mod api;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod cpu_pool;
pub mod error;
pub mod events;
pub mod fair_queue;
pub mod limits;
pub mod message_body;
pub mod policy;
pub mod replication;
pub mod server;
pub mod state;
pub mod storage;
pub mod stored;
pub mod tarpit;
pub mod writer;
