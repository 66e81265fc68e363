//! One context per message (`ScanContext`), built once by the engine and
//! read by every check: the raw bytes, the envelope cleaned once, the
//! parsed message and the extracted features, plus what several checks
//! derive from them and the first to ask computes (the header fields as
//! written, the Date header). No check parses anything again or reaches
//! into another check for what it computed; `rules::Input` is a cache of
//! rule texts over this.

use std::sync::OnceLock;

use crate::extract::Features;
use crate::extract::urls::{self, Url};
use crate::message::fields::raw_header_fields;
use crate::message::{Envelope, Message};

/// Everything a check may read about one message.
pub struct ScanContext<'a> {
    pub raw: &'a [u8],
    /// The envelope as the MTA sent it, cleaned once ([`Envelope::cleaned`]).
    pub envelope: Envelope,
    pub message: Message,
    pub features: Features,
    /// The top-level header fields as written (folding kept).
    header_fields: OnceLock<Vec<(String, String)>>,
    /// The Date header: absent, unparsable, or its time.
    date: OnceLock<Option<Option<i64>>>,
    /// Every URL of the message (links and text), normalised.
    urls: OnceLock<Vec<Url>>,
    /// The links alone, normalised.
    link_urls: OnceLock<Vec<Url>>,
    /// The domains whose DKIM signatures verified: set by the
    /// authentication check when network checks run, read by what trusts a
    /// domain only when it signed (the phishing check's brand owners).
    dkim_verified: OnceLock<Vec<String>>,
    /// Where shortener links led: set by the redirect check when network
    /// checks run, read with the links by the checks that judge them.
    redirect_targets: OnceLock<Vec<Url>>,
}

impl<'a> ScanContext<'a> {
    pub fn new(
        raw: &'a [u8],
        envelope: &Envelope,
        message: Message,
        features: Features,
    ) -> ScanContext<'a> {
        ScanContext {
            raw,
            envelope: envelope.cleaned(),
            message,
            features,
            header_fields: OnceLock::new(),
            date: OnceLock::new(),
            urls: OnceLock::new(),
            link_urls: OnceLock::new(),
            dkim_verified: OnceLock::new(),
            redirect_targets: OnceLock::new(),
        }
    }

    /// A context without features (they are the engine's to extract): for
    /// what reads only the message and envelope, such as rule tests.
    pub fn of_message(raw: &'a [u8], envelope: &Envelope, message: Message) -> ScanContext<'a> {
        ScanContext::new(raw, envelope, message, Features::default())
    }

    /// The message and its features back, once the checks are done with
    /// them (a learn keeps them).
    pub fn into_parts(self) -> (Message, Features) {
        (self.message, self.features)
    }

    /// Every URL in the message (links, then the visible text's), hosts
    /// normalised, with its registrable domain: extracted on first use, so
    /// a learn pays for it only when a URL map asks.
    pub fn urls(&self) -> &[Url] {
        self.urls.get_or_init(|| urls::extract(&self.message))
    }

    /// The message's links alone (no scan of the visible text), normalised
    /// as [`ScanContext::urls`] are: what the phishing check reads, at a
    /// fraction of the cost; every URL when those were extracted already.
    pub fn link_urls(&self) -> &[Url] {
        if let Some(all) = self.urls.get() {
            return all;
        }
        self.link_urls
            .get_or_init(|| urls::extract_links(&self.message))
    }

    /// Records the domains (`d=`, lowercased) whose DKIM signatures
    /// verified. The first record stands: one authentication check per
    /// scan sets it.
    pub fn record_dkim_verified(&self, domains: Vec<String>) {
        let _first_stands = self.dkim_verified.set(domains);
    }

    /// The domains whose DKIM signatures verified; empty when none did or
    /// when no authentication check ran (network checks off).
    pub fn dkim_verified(&self) -> &[String] {
        self.dkim_verified.get().map_or(&[], Vec::as_slice)
    }

    /// Records where the message's shortener links led. The first record
    /// stands: one redirect check per scan sets it.
    pub fn record_redirect_targets(&self, targets: Vec<Url>) {
        let _first_stands = self.redirect_targets.set(targets);
    }

    /// Where the message's shortener links led (their final URLs); empty
    /// when none was followed.
    pub fn redirect_targets(&self) -> &[Url] {
        self.redirect_targets.get().map_or(&[], Vec::as_slice)
    }

    /// The top-level header fields as written: (name, value with folding
    /// kept), in order; read from the raw bytes on first use.
    pub fn header_fields(&self) -> &[(String, String)] {
        self.header_fields
            .get_or_init(|| raw_header_fields(self.raw))
    }

    /// The Date header, parsed once for every check that reads it: `None`
    /// when there is none, `Some(None)` when it is not an RFC 5322 date,
    /// else its time (seconds since 1970, UTC).
    pub fn date(&self) -> Option<Option<i64>> {
        *self.date.get_or_init(|| {
            let text = self.message.header("date")?;
            Some(mail_parser::DateTime::parse_rfc822(text.trim()).map(|d| d.to_timestamp()))
        })
    }

    /// Seconds the Date header is ahead of the newest Received stamp
    /// (negative: behind), when both are there. The Received stamp rather
    /// than the clock now, so that rescoring an old archive gives the
    /// verdict it got then.
    pub fn date_skew(&self) -> Option<i64> {
        let date = self.date().flatten()?;
        let received = self
            .message
            .relays
            .iter()
            .find_map(|relay| relay.received_at)?;
        Some(date - received)
    }

    /// The distinct hosts of the message's URLs (links and text), as the
    /// URL extractor normalised them.
    pub fn url_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for url in self.urls() {
            if !hosts.contains(&url.host) {
                hosts.push(url.host.clone());
            }
        }
        hosts
    }
}
