use std::process::ExitCode;

fn main() -> ExitCode {
    patchward::cli::main()
}
