//! CEL validation: any text, in either scope, is checked without a panic
//! and within the cost limits' time (AFL's timeout catches a hang).
fn main() {
    afl::fuzz!(|data: &[u8]| patchward_fuzz::targets::cel(data));
}
