//! fio-l2 protocol core: FIO keys, signatures, addresses, ABI serialization,
//! the content cipher and the v1 message envelope. Pure: no I/O, no async.
//! Byte-compatible with `@fioprotocol/fiojs` (see docs/fio-standards.md).

pub mod abi;
pub mod address;
pub mod cipher;
pub mod content;
pub mod envelope;
pub mod error;
pub mod hash;
pub mod keys;
pub mod signature;

pub use address::{canonical_address, validate_address};
pub use envelope::{Message, SignedMessage, TimePolicy};
pub use error::{Error, ErrorCode, Result};
pub use keys::{PrivateKey, PublicKey};
pub use signature::Signature;
