//! The fio-l2 relay node: accepts signed messages, checks them against the
//! FIO Chain, stores them durably and serves each inbox to its owner.

pub mod storage;
pub mod writer;
