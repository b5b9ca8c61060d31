//! Storage benchmark: every backend on the node's workload, in one run.
//!
//! cargo run --release -p fio-l2-node --example storage_bench -- \
//!     [--messages N] [--recipients N] [--body-bytes N] [--rounds N] \
//!     [--queries N] [--single-puts N] [--batched-puts N] [--batch-sizes 1,64,256] \
//!     [--backends sqlite,redb] [--dir PATH] [--seed N]
//!
//! The first backend listed is the baseline of the ratios. `--dir` must be on a
//! real disk (fsync on tmpfs measures nothing); by default a fresh directory
//! under the system temp dir is used and removed.

use std::process::ExitCode;

use fio_l2_node::storage::bench::{run, BenchOptions};
use fio_l2_node::storage::Backend;

fn parse_args() -> Result<BenchOptions, String> {
    let mut o = BenchOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.replace('_', "")
                .parse::<usize>()
                .map_err(|e| format!("{flag} {v}: {e}"))
        };
        match flag.as_str() {
            "--messages" => o.messages = num(&value)?,
            "--recipients" => o.recipients = num(&value)?,
            "--body-bytes" => o.body_bytes = num(&value)?,
            "--rounds" => o.rounds = num(&value)?,
            "--queries" => o.queries = num(&value)?,
            "--single-puts" => o.single_puts = num(&value)?,
            "--batched-puts" => o.batched_puts = num(&value)?,
            "--seed" => o.seed = num(&value)? as u64,
            "--dir" => o.dir = Some(value.into()),
            "--batch-sizes" => {
                o.batch_sizes = value.split(',').map(num).collect::<Result<_, _>>()?;
            }
            "--backends" => {
                o.backends = value
                    .split(',')
                    .map(|b| b.parse::<Backend>().map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!(
                "usage: storage_bench [--messages N] [--recipients N] [--body-bytes N] \
                 [--rounds N] [--queries N] [--single-puts N] [--batched-puts N] \
                 [--batch-sizes 1,64,256] [--backends sqlite,redb] [--dir PATH] [--seed N]"
            );
            return ExitCode::from(2);
        }
    };
    match run(opts, |line| eprintln!("{line}")) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("storage bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
