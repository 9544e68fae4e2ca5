//! The agent's reader of `rpm --query` output and of SOURCERPM names.
fn main() {
    afl::fuzz!(|data: &[u8]| patchward_fuzz::targets::rpm_query(data));
}
