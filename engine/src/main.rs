use std::process::ExitCode;

// The catalog and planner allocate many small, short-lived objects; glibc's
// allocator spends more time consolidating than the import spends parsing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    patchward::cli::main()
}
