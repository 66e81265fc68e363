//! rspamd's `/checkv2` reply shape (reference: rspamd.md §1.4).
//!
//! One type for the CLI's `scan --json` and the daemon, so the two can never
//! disagree. Field order follows rspamd's emission order.

use serde::Serialize;
use std::collections::BTreeMap;

use crate::engine::Scan;
use crate::verdict::Action;

/// The JSON object rspamd returns from `/checkv2`.
#[derive(Debug, Serialize)]
pub struct CheckV2Reply {
    pub is_skipped: bool,
    pub score: f64,
    pub required_score: f64,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub symbols: BTreeMap<String, SymbolReply>,
    pub messages: BTreeMap<String, String>,
    pub urls: Vec<String>,
    pub emails: Vec<String>,
    #[serde(rename = "message-id", skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub time_real: f64,
    pub milter: MilterReply,
}

/// One symbol in the reply.
#[derive(Debug, Serialize)]
pub struct SymbolReply {
    pub name: String,
    pub score: f64,
    pub metric_score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// Header changes the MTA's milter should make.
#[derive(Debug, Serialize)]
pub struct MilterReply {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub add_headers: BTreeMap<String, HeaderValueReply>,
    pub remove_headers: BTreeMap<String, i32>,
}

#[derive(Debug, Serialize)]
pub struct HeaderValueReply {
    pub value: String,
    pub order: i32,
}

impl CheckV2Reply {
    /// Builds the reply for a finished scan that took `seconds`.
    pub fn new(scan: &Scan, seconds: f64) -> CheckV2Reply {
        let verdict = &scan.verdict;
        let symbols = verdict
            .symbols
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    SymbolReply {
                        name: s.name.clone(),
                        score: s.score,
                        metric_score: s.weight,
                        description: s.description.clone(),
                        options: s.options.clone(),
                    },
                )
            })
            .collect();
        let mut messages = BTreeMap::new();
        if let Some(text) = &verdict.smtp_message {
            messages.insert("smtp_message".to_owned(), text.clone());
        } else if let Some(forced_by) = &verdict.forced_by
            && verdict.action == Action::Reject
        {
            messages.insert(
                "smtp_message".to_owned(),
                format!("Message rejected: {forced_by}"),
            );
        }
        let mut add_headers = BTreeMap::new();
        if verdict.action.is_spam() {
            add_headers.insert(
                "X-Spam".to_owned(),
                HeaderValueReply {
                    value: "Yes".to_owned(),
                    order: 0,
                },
            );
        }
        add_headers.insert(
            "X-Spam-Status".to_owned(),
            HeaderValueReply {
                value: format!(
                    "{}, score={:.2} required={:.2} tests=[{}]",
                    if verdict.action.is_spam() {
                        "Yes"
                    } else {
                        "No"
                    },
                    verdict.score,
                    verdict.required_score,
                    verdict
                        .symbols
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                order: 0,
            },
        );
        let remove_headers = [("X-Spam".to_owned(), 0), ("X-Spam-Status".to_owned(), 0)]
            .into_iter()
            .collect();
        CheckV2Reply {
            is_skipped: false,
            score: verdict.score,
            required_score: verdict.required_score,
            action: verdict.action.name(),
            subject: verdict.subject.clone(),
            symbols,
            messages,
            urls: scan.urls.clone(),
            emails: Vec::new(),
            message_id: scan.message_id.clone(),
            time_real: seconds,
            milter: MilterReply {
                add_headers,
                remove_headers,
            },
        }
    }
}
