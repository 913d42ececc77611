//! The `pgseal` binary: parses the command line and hands over to [`pgseal::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    pgseal::cli::main()
}
