//! Any bytes as a message: parse, extract, every local check, the verdict.
fn main() {
    // A panic ends the process (AFL records the crash).
    let engine = std::panic::AssertUnwindSafe(chaff_fuzz::engine());
    let envelope = chaff::message::Envelope::default();
    afl::fuzz!(|data: &[u8]| {
        let _ = engine.scan(data, &envelope);
    });
}
