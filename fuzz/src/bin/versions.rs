//! Version comparison (dpkg, rpm, Windows): total, antisymmetric and
//! reflexive on any two strings, so sorting and "meets the fix" never
//! disagree with themselves.
fn main() {
    afl::fuzz!(|data: &[u8]| patchward_fuzz::targets::versions(data));
}
