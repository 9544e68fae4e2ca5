//! The agent's readers of dnf's output: index records and the transaction
//! table a simulation prints (whose removals refuse a transaction).
fn main() {
    afl::fuzz!(|data: &[u8]| patchward_fuzz::targets::dnf_output(data));
}
