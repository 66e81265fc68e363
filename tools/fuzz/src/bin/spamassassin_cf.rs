//! Any text as a SpamAssassin `.cf` file: the reader, the Perl-regex
//! translator, compilation, and the compiled rules run on one message.
use chaff::config::Config;
use chaff::rules::{Input, RuleSet};

const MESSAGE: &[u8] = b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n\
Subject: Cheap meds now\r\nDate: Tue, 1 May 2007 10:00:00 +0000\r\n\
Received: from mx.example.com (mx.example.com [192.0.2.1]) by mail.example.org\r\n\
Content-Type: text/html\r\n\r\n<p>Buy <a href=\"http://example.net/x\">here</a></p>\r\n";

fn main() {
    let config = Config::embedded();
    let envelope = chaff::message::Envelope::default();
    let message = chaff::message::parse(MESSAGE, &config.limits);
    let context = chaff::context::ScanContext::of_message(MESSAGE, &envelope, message);
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        if let Ok(rules) =
            RuleSet::from_spamassassin_texts(&[("fuzz.cf", &text)], 3, &config.symbol_names())
        {
            let input = Input::new(&context);
            let _ = rules.check(&input);
        }
    });
}
