//! The policy loader and validation: one policy file, read, parsed and
//! validated as a repository of one file. Nothing may panic, and a
//! repository with errors never yields a policy.
fn main() {
    afl::fuzz!(|data: &[u8]| patchward_fuzz::targets::policy(data));
}
