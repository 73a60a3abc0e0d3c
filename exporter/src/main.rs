//! `llmchat-exporter` binary: flags in, exit code out. See the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use llmchat_exporter::{shutdown, Cli};

use llmchat_common::EXIT_USAGE;

fn main() -> ExitCode {
    let cli = match llmchat_common::parse_cli_with(|| Cli::parse_from_args(std::env::args_os())) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match &cli.command {
        Some(llmchat_exporter::config::Command::Report(args)) => {
            return llmchat_report::main("llmchat-exporter report", args)
        }
        Some(llmchat_exporter::config::Command::VerifyDeployment(args)) => return verify(args),
        None => {}
    }
    let check_only = cli.config_check;
    let config = match cli.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llmchat-exporter: invalid configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if check_only {
        println!(
            "configuration OK: listening on {}, collectors: {}",
            config.web.listen_address,
            config.enabled_collectors().join(", ")
        );
        return ExitCode::SUCCESS;
    }
    let level = config.log.level.clone();
    llmchat_common::runtime::serve(
        "llmchat-exporter",
        &level,
        false,
        llmchat_common::runtime::FatalError::Logged,
        llmchat_exporter::run(config, shutdown::signal()),
    )
}

/// `llmchat-exporter verify-deployment`: the verdict as the exit code
/// (0 pass, 1 regression, 2 inconclusive, 3 rollout not finished), 64 for
/// a bad flag, 4 when Prometheus could not be asked.
fn verify(args: &llmchat_exporter::verify::VerifyArgs) -> ExitCode {
    use llmchat_exporter::verify;
    match llmchat_common::runtime::once("llmchat-exporter verify-deployment", verify::run(args)) {
        Err(code) => code,
        Ok(Ok(v)) => {
            print!("{}", verify::render(&v, args.format, args.lang));
            ExitCode::from(v.exit_code)
        }
        Ok(Err(e)) => {
            eprintln!("llmchat-exporter verify-deployment: {e}");
            if e.is_usage() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(verify::EXIT_UNAVAILABLE)
            }
        }
    }
}
