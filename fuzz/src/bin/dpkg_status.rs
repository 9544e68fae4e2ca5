//! The agent's reader of dpkg's status file and its `Source:` field.
fn main() {
    afl::fuzz!(|data: &[u8]| patchward_fuzz::targets::dpkg_status(data));
}
