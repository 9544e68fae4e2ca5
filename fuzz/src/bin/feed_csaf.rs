//! The csaf feed importer: any bytes are a feed or a refusal, never a panic;
//! an accepted feed holds unique, non-empty patch ids within the limit.
fn main() {
    afl::fuzz!(|data: &[u8]| patchward_fuzz::targets::feed_csaf(data));
}
