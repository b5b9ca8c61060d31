//! The form a message is stored in: its canonical JSON with `id`, exactly the
//! bytes an inbox page or an SSE event carries. Reads are then a copy, not a
//! decode: rendering from the packed form costs about 36 µs a message (three
//! curve-point decompressions and base58 encodings), a third of the inbox
//! page budget. `decode` re-parses strictly for the rare paths that need the
//! message itself (replication).

use fio_l2_protocol::{Error, SignedMessage};

pub fn encode(msg: &SignedMessage) -> Vec<u8> {
    msg.to_json_string(true).into_bytes()
}

/// Strict parse of a stored message; also reads the packed binary form.
pub fn decode(bytes: &[u8]) -> Result<SignedMessage, Error> {
    if bytes.first() == Some(&b'{') {
        SignedMessage::from_json(bytes)
    } else {
        SignedMessage::from_binary(bytes)
    }
}

/// `{"seq":N,"envelope":{...}}`: an inbox page item and an SSE event's data.
pub fn event_json(seq: u64, envelope_json: &str) -> String {
    let mut out = String::with_capacity(envelope_json.len() + 40);
    push_event_json(&mut out, seq, envelope_json);
    out
}

/// [`event_json`] appended to `out` (an inbox page: no string per message).
pub fn push_event_json(out: &mut String, seq: u64, envelope_json: &str) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{{\"seq\":{seq},\"envelope\":");
    out.push_str(envelope_json);
    out.push('}');
}

/// The stored JSON as text, for splicing into answers without re-parsing.
/// Only this node writes the store, so the bytes are the JSON `encode` made;
/// anything else is reported as corrupt.
pub fn json_text(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.starts_with('{') && s.ends_with('}') => Some(s),
        _ => None,
    }
}
