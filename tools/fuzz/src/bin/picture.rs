//! Any bytes as a picture: the QR reader's decoders (PNG, JPEG, GIF), its
//! grey conversion and finder scan. Panics inside the decoders are caught
//! and counted by the reader; what AFL finds here are aborts, stack
//! overflows and hangs.
fn main() {
    let limits = chaff::message::Limits::default();
    afl::fuzz!(|data: &[u8]| {
        let mut budget = chaff::message::images::ImageReaderBudget::new(&limits);
        let mut facts = chaff::message::images::ImageFacts::default();
        budget.read(data, &mut facts);
    });
}
