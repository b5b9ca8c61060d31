//! The `fio-l2` binary: node and client commands. Conventions: JSON on
//! stdout, errors on stderr, exit status 1 on any error.

mod bench_ingest;
mod bench_node;
mod bench_replication;
mod bench_spam;
mod bench_util;
mod cmd_bench;
mod cmd_client;
mod cmd_crypto;
mod cmd_devchain;
mod cmd_key;
mod cmd_message;
mod cmd_node;
mod cmd_sig;
mod util;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the node allocates and frees many
/// small buffers per envelope on several threads, where glibc's arenas
/// spent 8-10 % of each thread's CPU (perf, `bench node`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fio-l2",
    version,
    about = "fio-l2: the off-chain message layer for the FIO Protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and inspect FIO keys.
    #[command(subcommand)]
    Key(cmd_key::KeyCommand),
    /// Encrypt content for a FIO Address's key, as FIO Request content is encrypted.
    Encrypt(cmd_crypto::EncryptArgs),
    /// Decrypt content made by `encrypt` (or fiojs).
    Decrypt(cmd_crypto::DecryptArgs),
    /// Build, sign and verify v1 message envelopes.
    #[command(subcommand)]
    Message(cmd_message::MessageCommand),
    /// Low-level signature and ECDH operations on raw digests (for wallets and interop tests).
    #[command(subcommand)]
    Sig(cmd_sig::SigCommand),
    /// Run a relay node.
    Node(cmd_node::NodeArgs),
    /// Encrypt, sign and submit a message to a node (looks up the recipient's encrypt key on the chain).
    Send(cmd_client::SendArgs),
    /// Read an inbox with an owner proof; verifies and decrypts every message.
    Inbox(cmd_client::InboxArgs),
    /// Delete messages from an inbox (owner proof).
    Ack(cmd_client::AckArgs),
    /// Measure the protocol's hot operations on this machine.
    Bench(cmd_bench::BenchArgs),
    /// Run a local FIO dev chain (`--listen`, `--data`), or set names up on one.
    Devchain(cmd_devchain::DevchainArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result = match cli.command {
        Command::Key(c) => cmd_key::run(c),
        Command::Encrypt(a) => cmd_crypto::encrypt(a),
        Command::Decrypt(a) => cmd_crypto::decrypt(a),
        Command::Message(c) => cmd_message::run(c),
        Command::Sig(c) => cmd_sig::run(c),
        Command::Node(a) => cmd_node::run(a),
        Command::Send(a) => cmd_client::send(a),
        Command::Inbox(a) => cmd_client::inbox(a),
        Command::Ack(a) => cmd_client::ack(a),
        Command::Bench(a) => cmd_bench::run(a),
        Command::Devchain(a) => cmd_devchain::run(a),
    };
    if let Err(e) = result {
        eprintln!("fio-l2: {e}");
        std::process::exit(1);
    }
}
