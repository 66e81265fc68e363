//! Forms in HTML, for the credential-harvesting checks: where each posts
//! and whether it asks for a password or a payment card. A bank never asks
//! for either by mail, so a form that does is the phishing page itself.

use std::sync::LazyLock;

use regex::Regex;

/// What a form asks for, for the credential-harvesting checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// The `action` as written; empty when the form has none or the
    /// inputs stand outside any form.
    pub action: String,
    /// An `<input type=password>`.
    pub password: bool,
    /// An input named for a card number, its security code or expiry, a
    /// PIN, a social-security number or a bank routing number.
    pub card: bool,
    /// Inputs a reader types into (not hidden, not buttons).
    pub fields: usize,
    /// In an attached HTML or SVG file: the attachment is the phishing
    /// page, opened from disk where no browser warning applies.
    pub attached: bool,
}

/// Forms kept per HTML part.
const MAX_FORMS: usize = 32;

/// Names, ids, placeholders and autocomplete tokens of inputs that take a
/// payment card or another secret a bank would never ask for by mail.
static CARD_FIELD: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)cc-?(?:num|number|csc|exp)|card.?(?:num|no\b|number|holder)|cardnumber|cvv|cvc|ccv|security.?code|exp(?:iry|iration).?(?:date|month|year)?|\bssn\b|social.?security|routing|\bpin\b|atm.?pin|maiden",
    )
    .ok()
});

/// Records a `<form>` or what an input asks for in the form it belongs to
/// (the last one opened; inputs before any form make a form of their own).
pub(super) fn note_form_tag(
    forms: &mut Vec<Form>,
    tag_name: &str,
    attr: &dyn Fn(&str) -> Option<String>,
) {
    if tag_name == "form" {
        if forms.len() < MAX_FORMS {
            forms.push(Form {
                action: attr("action").unwrap_or_default(),
                ..Form::default()
            });
        }
        return;
    }
    let kind = attr("type").unwrap_or_default().to_ascii_lowercase();
    if matches!(
        kind.as_str(),
        "hidden" | "submit" | "button" | "image" | "reset" | "checkbox" | "radio"
    ) {
        return;
    }
    if forms.is_empty() {
        forms.push(Form::default());
    }
    let Some(form) = forms.last_mut() else {
        return;
    };
    form.fields += 1;
    if kind == "password" {
        form.password = true;
    }
    let names_card = ["name", "id", "placeholder", "autocomplete"]
        .iter()
        .filter_map(|attribute| attr(attribute))
        .any(|value| {
            CARD_FIELD
                .as_ref()
                .is_some_and(|card| card.is_match(&value))
        });
    if names_card {
        form.card = true;
    }
}
