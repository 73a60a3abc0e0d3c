//! `llmchat-exporter report` as a program of its own. The exporter's
//! subcommand is what is shipped; this is the same code, for the report
//! crate's tests, which run it as the subcommand runs: in its own process,
//! with its time zone from TZ, its stderr and its exit code.

#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "llmchat-report",
    about = "The monthly performance report (shipped as `llmchat-exporter report`)"
)]
struct Cli {
    #[command(flatten)]
    args: llmchat_report::ReportArgs,
}

fn main() -> std::process::ExitCode {
    match llmchat_common::parse_cli::<Cli>() {
        Ok(cli) => llmchat_report::main("llmchat-exporter report", &cli.args),
        Err(code) => code,
    }
}
