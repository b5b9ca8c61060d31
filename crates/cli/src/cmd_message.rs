use crate::util::{now_unix, print_json, read_stdin, PrivateKeyArgs};
use clap::{Args, Subcommand};
use fio_l2_protocol::cipher::{encrypt_content, random_iv, shared_secret};
use fio_l2_protocol::envelope::parse_chain_id;
use fio_l2_protocol::{canonical_address, Message, PublicKey, SignedMessage, TimePolicy};
use serde_json::json;

#[derive(Subcommand)]
pub enum MessageCommand {
    /// Build an unsigned envelope: encrypts CONTENT_JSON to the recipient's
    /// encrypt key with the sender's key, prints the envelope JSON (no signature).
    New(NewArgs),
    /// Sign an unsigned envelope read on stdin; prints the signed envelope with its id.
    Sign {
        #[command(flatten)]
        key: PrivateKeyArgs,
        /// Chain id (64 hex digits) of the FIO Chain the addresses live on.
        #[arg(long)]
        chain_id: String,
    },
    /// Run the offline validity checks 1-4 on an envelope read on stdin;
    /// prints {"id","pow_bits","sender","recipient"}, or the reason on stderr and exit 1.
    Verify {
        /// Chain id (64 hex digits) the signature must be bound to.
        #[arg(long)]
        chain_id: String,
        #[command(flatten)]
        time: TimeArgs,
    },
}

#[derive(Args)]
pub struct TimeArgs {
    /// Check times as of this unix time instead of the clock.
    #[arg(long)]
    pub now: Option<u64>,
    /// Allowed clock skew for `created`, seconds.
    #[arg(long, default_value_t = TimePolicy::default().max_clock_skew)]
    pub max_clock_skew: u32,
    /// Longest time to live: `expires` at most this many seconds from now.
    #[arg(long, default_value_t = TimePolicy::default().max_ttl)]
    pub max_ttl: u32,
}

#[derive(Args)]
pub struct NewArgs {
    /// The sender's encryption private key (its FIO key unless it set a FIP-39 encrypt key).
    #[command(flatten)]
    pub key: PrivateKeyArgs,
    #[arg(long)]
    pub sender: String,
    #[arg(long)]
    pub recipient: String,
    /// The key owning the sender address (defaults to the public key of the private key).
    #[arg(long)]
    pub sender_key: Option<String>,
    /// The recipient's encrypt public key (FIP-39 key, else its FIO/FIO key).
    #[arg(long)]
    pub recipient_encrypt_key: String,
    #[arg(long)]
    pub content_type: String,
    /// Time to live in seconds.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    pub ttl: u32,
    /// Creation time (unix seconds); now when absent.
    #[arg(long)]
    pub created: Option<u32>,
    #[arg(long, default_value_t = 0)]
    pub nonce: u64,
    /// IV (hex) for the content cipher; random when absent.
    #[arg(long)]
    pub iv: Option<String>,
    /// The content as a JSON object.
    pub content_json: String,
}

fn err(e: fio_l2_protocol::Error) -> String {
    e.to_string()
}

pub fn run(cmd: MessageCommand) -> Result<(), String> {
    match cmd {
        MessageCommand::New(a) => new(a),
        MessageCommand::Sign { key, chain_id } => {
            let key = key.load()?;
            let chain_id = parse_chain_id(&chain_id).map_err(err)?;
            let m = Message::from_json_unsigned(&read_stdin()?).map_err(err)?;
            let signed = m.sign(&key, &chain_id).map_err(err)?;
            print_json(&signed.to_json_value(true))
        }
        MessageCommand::Verify { chain_id, time } => {
            let chain_id = parse_chain_id(&chain_id).map_err(err)?;
            let signed = SignedMessage::from_json(&read_stdin()?).map_err(err)?;
            let policy = TimePolicy {
                max_clock_skew: time.max_clock_skew,
                max_ttl: time.max_ttl,
            };
            signed
                .check_offline(&chain_id, time.now.unwrap_or_else(now_unix), &policy)
                .map_err(err)?;
            let m = signed.message();
            print_json(
                &json!({"id": signed.id_hex(), "pow_bits": signed.pow_bits(),
                "sender": m.sender, "recipient": m.recipient}),
            )
        }
    }
}

fn new(a: NewArgs) -> Result<(), String> {
    let key = a.key.load()?;
    let sender_encrypt_key = key.public_key();
    let sender_key = match &a.sender_key {
        Some(k) => PublicKey::parse(k).map_err(err)?,
        None => sender_encrypt_key,
    };
    let recipient_encrypt_key = PublicKey::parse(&a.recipient_encrypt_key).map_err(err)?;
    let iv = match &a.iv {
        Some(h) => hex::decode(h)
            .ok()
            .and_then(|v| <[u8; 16]>::try_from(v).ok())
            .ok_or("--iv must be 32 hex digits")?,
        None => random_iv(),
    };
    let content: serde_json::Value =
        serde_json::from_str(&a.content_json).map_err(|e| format!("content is not JSON: {e}"))?;
    let secret = shared_secret(&key, &recipient_encrypt_key);
    let created = match a.created {
        Some(c) => c,
        None => u32::try_from(now_unix()).map_err(|_| "clock is past 2106")?,
    };
    let m = Message {
        version: 1,
        content_type: a.content_type.clone(),
        sender: canonical_address(&a.sender).map_err(err)?,
        recipient: canonical_address(&a.recipient).map_err(err)?,
        sender_key,
        sender_encrypt_key,
        recipient_encrypt_key,
        created,
        expires: created
            .checked_add(a.ttl)
            .ok_or("created + ttl overflows")?,
        nonce: a.nonce,
        content: encrypt_content(&secret, &a.content_type, &content, &iv).map_err(err)?,
    };
    m.validate_fields().map_err(err)?;
    print_json(&m.to_json_value())
}
