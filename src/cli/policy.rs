//! `haltwire policy check|test`: validate a policy folder and run the tests beside its
//! policies, offline, without a broker. Output is made for people and CI alike: diagnostics as
//! `file:line:col: error[CODE]: …`, one line per failing test, and a last line CI can parse.

use crate::policy::{PolicySet, TraceOutcome};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Compile a policy folder and report every problem (exit 1 if there is any).
    Check {
        /// Policy folders [default: ./policies]; each is checked as its own set.
        dirs: Vec<PathBuf>,
        /// Also list the policies, in evaluation order.
        #[arg(long)]
        list: bool,
    },
    /// Run the tests beside the policies; the last line is `N passed, N failed`.
    Test {
        /// Policy folders [default: ./policies]; each is loaded as its own set.
        dirs: Vec<PathBuf>,
        /// For every test, show why each policy matched or not.
        #[arg(long)]
        explain: bool,
    },
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { dirs, list } => Ok(check(&with_default(dirs), list)),
        PolicyCommand::Test { dirs, explain } => Ok(test(&with_default(dirs), explain)),
    }
}

fn with_default(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    if dirs.is_empty() {
        vec![PathBuf::from("policies")]
    } else {
        dirs
    }
}

fn check(dirs: &[PathBuf], list: bool) -> ExitCode {
    let mut failed = false;
    for dir in dirs {
        match PolicySet::load_dir(dir) {
            Ok(set) => {
                if list {
                    for p in set.policies() {
                        let state = if p.enabled { "" } else { " (disabled)" };
                        println!(
                            "{}:{}: {} [{}] {}{state}: {}",
                            p.file.display(),
                            p.line,
                            p.id,
                            p.priority.as_str(),
                            p.action,
                            p.title
                        );
                    }
                }
                println!("{} policies OK (hash {})", set.len(), set.hash());
            }
            Err(diags) => {
                failed = true;
                println!("{diags}");
                println!("{}: {} error(s)", dir.display(), diags.len());
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn test(dirs: &[PathBuf], explain: bool) -> ExitCode {
    let (mut passed, mut failed) = (0usize, 0usize);
    for dir in dirs {
        let set = match PolicySet::load_dir(dir) {
            Ok(set) => set,
            Err(diags) => {
                // A folder that does not load counts as one failure, so the last line alone
                // never reads as a pass.
                failed += 1;
                println!("{diags}");
                println!("{}: {} error(s); its tests were not run", dir.display(), diags.len());
                continue;
            }
        };
        let report =
            if explain { set.run_tests_explained(Path::new("")) } else { set.run_tests(Path::new("")) };
        for case in &report.cases {
            if explain {
                println!("{case}");
                for trace in &case.trace {
                    let mark = if matches!(trace.outcome, TraceOutcome::Decides(_)) { "=>" } else { "  " };
                    println!("  {mark} {trace}");
                }
            } else if case.failure.is_some() {
                println!("{case}");
            }
        }
        if report.skipped > 0 {
            println!("{}: {} test(s) of disabled policies skipped", dir.display(), report.skipped);
        }
        passed += report.passed;
        failed += report.failed;
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
