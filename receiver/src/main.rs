//! `llmchat-receiver` binary: flags in, exit code out. See the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use llmchat_receiver::Cli;

use llmchat_common::EXIT_USAGE;

/// jemalloc, not the system's malloc: after an alert storm its decay hands
/// the pages the posts took back to the system within seconds, where
/// glibc's arenas keep them (bench/storm-memory.sh, README "Benchmarks").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let mut cli = match llmchat_common::parse_cli_with(|| Cli::parse_from_args(std::env::args_os()))
    {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let check_only = cli.config_check;
    if let Some(llmchat_receiver::config::Command::Render(args)) = cli.command.take() {
        return render(cli, &args);
    }
    let config = match cli.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llmchat-receiver: invalid configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if check_only {
        // Building the channels is part of the check: an unreadable CA
        // file or a malformed sender address is a configuration error.
        let senders = match config.senders(Default::default()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "llmchat-receiver: invalid configuration: {}",
                    llmchat_common::error_chain(&e)
                );
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let actions: Vec<&str> = config.recovery.actions.keys().map(String::as_str).collect();
        println!(
            "configuration OK: listening on {}; channels: {}; recovery actions: {}{}",
            config.web.listen_address,
            senders.configured_names().join(", "),
            if actions.is_empty() {
                "none".to_string()
            } else {
                actions.join(", ")
            },
            if config.recovery.dry_run {
                " (dry run)"
            } else {
                ""
            }
        );
        return ExitCode::SUCCESS;
    }
    let json_logs = config.log.format == "json";
    let level = config.log.level.clone();
    llmchat_common::runtime::serve(
        "llmchat-receiver",
        &level,
        json_logs,
        llmchat_common::runtime::FatalError::LoggedAndPrinted,
        llmchat_receiver::run(config, llmchat_receiver::shutdown_signal()),
    )
}

/// `llmchat-receiver render`: prints the messages; 64 for a bad
/// configuration or template, 1 for an unreadable payload.
fn render(cli: Cli, args: &llmchat_receiver::config::RenderArgs) -> ExitCode {
    let config = match cli.resolve_for_render() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llmchat-receiver: invalid configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match llmchat_receiver::render::render(config, args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("llmchat-receiver: {}", llmchat_common::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
