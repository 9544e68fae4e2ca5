//! The agent's desired-state decoder and trust: with a first byte of 0 the
//! rest is an envelope as the engine would send it (forged: it must never
//! be accepted); otherwise the rest is a payload the engine's key signs,
//! which the agent accepts only for its own device, unexpired.
fn main() {
    afl::fuzz!(|data: &[u8]| patchward_fuzz::targets::desired_state(data));
}
