//! The `haltwire` binary: parses the command line and hands off to `haltwire::cli`.

fn main() -> std::process::ExitCode {
    haltwire::cli::main()
}
