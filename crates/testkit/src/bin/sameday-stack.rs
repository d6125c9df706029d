//! `sameday-stack up|down|status|env`: the local MariaDB and AWS emulators for running the
//! daemons by hand, started in the background by the testkit's own starters. Wiring only;
//! the logic is in `sameday_testkit::stack`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sameday_testkit::stack::{default_dir, environment, export_lines, Service, Stack, UpOptions};

/// Exit code when the stack (or part of it) is not running, as `status` of an init script.
const NOT_RUNNING: u8 = 3;

#[derive(Parser)]
#[command(
    name = "sameday-stack",
    about = "MariaDB (binlog ROW/FULL, GTID) and the AWS emulators (kinesalite, fauxqs, moto) on 127.0.0.1, \
             in the background",
    after_help = "Typical use:  eval \"$(sameday-stack up)\"   ...   sameday-stack down\n\
                  `up` and `env` print `export` lines on stdout (progress goes to stderr)."
)]
struct Cli {
    /// Where the state file and the servers' files (MariaDB datadir, logs) live
    /// [default: <workspace>/.cache/stack]
    #[arg(long, global = true, env = "SAMEDAY_STACK_DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start what is not running yet (MariaDB keeps its datadir across down/up) and print
    /// the environment to export.
    Up {
        /// Only these services (comma-separated)
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<Service>,
        /// An extra mariadbd argument, e.g. --mariadb-arg=--max-binlog-size=1G (repeatable;
        /// used when MariaDB is started, ignored when it already runs)
        #[arg(long = "mariadb-arg", allow_hyphen_values = true)]
        mariadb_args: Vec<String>,
    },
    /// Stop everything `up` started; files (the MariaDB datadir too) stay unless --purge.
    Down {
        /// Also remove the servers' files and the state file
        #[arg(long)]
        purge: bool,
    },
    /// What runs, with pid and port; exit code 3 if any recorded service is not running.
    Status,
    /// Print the `export` lines again for what runs; exit code 3 if nothing runs.
    Env,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stack = Stack::new(cli.dir.unwrap_or_else(default_dir));
    match run(&stack, cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sameday-stack: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(stack: &Stack, command: Cmd) -> Result<ExitCode, String> {
    match command {
        Cmd::Up { only, mariadb_args } => {
            let running = stack.up(&UpOptions { only, mariadb_args }).map_err(|e| {
                format!(
                    "{e}\n(what did start keeps running: `sameday-stack down --dir {}` stops it)",
                    stack.dir().display()
                )
            })?;
            print!("{}", export_lines(&environment(stack, &running)));
            eprintln!("sameday-stack: up in {}; stop with `sameday-stack down`", stack.dir().display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down { purge } => {
            let stopped = stack.down(purge)?;
            if stopped.is_empty() {
                eprintln!("sameday-stack: nothing was running in {}", stack.dir().display());
            }
            if purge {
                eprintln!("sameday-stack: removed the stack's files in {}", stack.dir().display());
            } else if stack.mariadb_datadir().is_dir() {
                eprintln!(
                    "sameday-stack: kept the MariaDB datadir {} (`down --purge` removes it)",
                    stack.mariadb_datadir().display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status => {
            let entries = stack.entries()?;
            if entries.is_empty() {
                println!("nothing started in {}", stack.dir().display());
                return Ok(ExitCode::from(NOT_RUNNING));
            }
            let mut all_up = true;
            for entry in entries {
                let state = match (entry.is_running(), entry.answers()) {
                    (true, true) => format!("running      pid {:<7} 127.0.0.1:{}", entry.pid, entry.port),
                    (true, false) => format!("not answering pid {:<6} 127.0.0.1:{}", entry.pid, entry.port),
                    (false, _) => format!("stopped      (last port {})", entry.port),
                };
                all_up &= state.starts_with("running");
                println!("{:<11} {state}", entry.service.name());
            }
            println!("dir {}", stack.dir().display());
            Ok(if all_up { ExitCode::SUCCESS } else { ExitCode::from(NOT_RUNNING) })
        }
        Cmd::Env => {
            let running = stack.running()?;
            if running.is_empty() {
                eprintln!("sameday-stack: nothing runs in {}; start it with `sameday-stack up`", stack.dir().display());
                return Ok(ExitCode::from(NOT_RUNNING));
            }
            print!("{}", export_lines(&environment(stack, &running)));
            Ok(ExitCode::SUCCESS)
        }
    }
}
