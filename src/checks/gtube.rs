//! GTUBE: the test string admins send to see that filtering works.
//!
//! As in SpamAssassin and rspamd, a message containing it is rejected
//! whatever else it scores; the forced action is configuration
//! (`[symbols.GTUBE] force_action = "reject"`).

use crate::context::ScanContext;
use crate::symbol::Symbol;

/// The Generic Test for Unsolicited Bulk Email.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Emits `GTUBE` when any text part contains the test string.
pub fn check(context: &ScanContext<'_>) -> Option<Symbol> {
    context
        .message
        .text_parts
        .iter()
        .any(|part| part.text.contains(GTUBE))
        .then(|| Symbol::new("GTUBE"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Limits, parse};

    #[test]
    fn finds_the_string_in_plain_and_html_and_only_there() {
        let fires = |raw: &str| {
            let message = parse(raw.as_bytes(), &Limits::default());
            let context = ScanContext::of_message(raw.as_bytes(), &Envelope::default(), message);
            check(&context).is_some()
        };
        assert!(fires(&format!("Subject: t\n\n{GTUBE}\n")));
        assert!(fires(&format!(
            "Subject: t\nContent-Type: text/html\n\n<p>{GTUBE}</p>\n"
        )));
        assert!(!fires("Subject: t\n\nnothing to see\n"));
    }
}
