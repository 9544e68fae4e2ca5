//! The agent's readers of apt's output: `apt-cache show` records and
//! `--print-uris` lines (a fetch always carries a sha256).
fn main() {
    afl::fuzz!(|data: &[u8]| patchward_fuzz::targets::apt_output(data));
}
