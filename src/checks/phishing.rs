//! Phishing: the signs of credential theft that need no learning, because a
//! phishing message is new on the day it arrives. Deceptive links (a brand's
//! domain shown over a link elsewhere, lookalike and confusable domains,
//! brand names worn as subdomains, shorteners, `data:`/`javascript:`
//! links), brand impersonation (a brand in the From name whose domain is not
//! the brand's, a Reply-To elsewhere), and credential harvesting (forms that
//! ask for passwords or cards, attached web pages with forms).
//!
//! A brand's own mail is mail from its domain or signed by it (DKIM, when
//! the network checks ran and verified it): the engine runs this check
//! after them for that reason.
//!
//! Every symbol's options say what it saw (which brand, which domain, how
//! it imitates), so `scan --explain` and the reply show why. The lure
//! wording (verify your account, account suspended) is regex rules in
//! `rules/phishing.toml`, which combine these symbols in metas.

use crate::context::ScanContext;
use crate::extract::urls::{host_in_text, link_host, registrable_domain};
use crate::lists::brands::{BrandId, Brands, PhishingData};
use crate::symbol::Symbol;

/// Registrable domains of one message looked at for lookalikes.
const MAX_DOMAINS: usize = 64;
/// Visible text searched for brand names, per text part, and the parts
/// searched: the brand a phishing message names is named near its top, and
/// a message's second part is mostly the first's HTML or text twin.
const BRAND_TEXT_BYTES: usize = 1024;
const BRAND_TEXT_PARTS: usize = 2;

pub fn check(context: &ScanContext<'_>, data: &PhishingData) -> Vec<Symbol> {
    let message = &context.message;
    let brands = &data.brands;
    let mut symbols = Vec::new();
    let from_domain = message
        .from_address
        .rsplit_once('@')
        .and_then(|(_, host)| registrable_domain(host));
    // The brand's own mail: sent from its domain, or signed by it (an
    // ESP's envelope and From with the brand's DKIM signature).
    let signers: Vec<String> = context
        .dkim_verified()
        .iter()
        .filter_map(|domain| registrable_domain(domain))
        .collect();
    let from_owns = |brand: BrandId| {
        from_domain
            .as_deref()
            .into_iter()
            .chain(signers.iter().map(String::as_str))
            .any(|domain| brands.owns(brand, domain))
    };

    // Which brands the message names, and where.
    let in_from_name = brands.named_in(&message.from_name);
    let in_subject = brands.named_in(&message.subject);
    let mut named = in_from_name.clone();
    add_new(&mut named, in_subject.iter().copied());
    for part in message.text_parts.iter().take(BRAND_TEXT_PARTS) {
        let head = &part.text[..part.text.floor_char_boundary(BRAND_TEXT_BYTES)];
        add_new(&mut named, brands.named_in(head));
    }
    let foreign: Vec<BrandId> = named.iter().copied().filter(|&b| !from_owns(b)).collect();

    for &brand in &in_from_name {
        if !from_owns(brand) {
            symbols.push(Symbol::new("PHISH_FROM_BRAND_NAME").with_option(format!(
                "{} from {}",
                brands.name(brand),
                from_domain.as_deref().unwrap_or("no domain")
            )));
        }
    }
    for &brand in &foreign {
        symbols.push(Symbol::new("PHISH_BRAND_NAMED").with_option(brands.name(brand)));
    }
    if let Some(domain) = &from_domain
        && let Some(look) = brands.lookalike(domain, &named)
    {
        symbols.push(
            Symbol::new("PHISH_FROM_LOOKALIKE")
                .with_option(format!("{domain} ~ {} ({})", look.imitates, look.how)),
        );
    }
    if let Some(other) = address_in_name(&message.from_name)
        && registrable_domain(other.rsplit_once('@').map_or("", |(_, h)| h)) != from_domain
    {
        symbols.push(Symbol::new("PHISH_FROM_NAME_ADDRESS").with_option(other));
    }
    // Reply-To elsewhere when the From name claims a brand: the answers go
    // to the thief.
    // (By its name only: the domains of Yahoo, Microsoft and Google are
    // their users' freemail too.)
    let claimed = &in_from_name;
    if !claimed.is_empty()
        && let Some(reply_to) = message.header("reply-to")
        && let Some(reply_domain) = address_domain(reply_to)
        && !claimed.iter().any(|&b| brands.owns(b, &reply_domain))
    {
        symbols.push(Symbol::new("PHISH_REPLYTO_ELSEWHERE").with_option(format!(
            "{} replies to {reply_domain}",
            brands.name(claimed[0])
        )));
    }

    // A link inside a picture: what a phone camera opens, unseen by any
    // filter that reads only text.
    for code in &message.images.qr_codes {
        if let Some(host) = link_host(code.trim()).or_else(|| {
            link_host(&format!("http://{}", code.trim())).filter(|_| code.starts_with("www."))
        }) {
            symbols.push(Symbol::new("PHISH_QR_CODE_URL").with_option(host));
        }
    }
    link_checks(context, data, &named, &mut symbols);
    form_checks(
        context,
        brands,
        &named,
        from_domain.as_deref(),
        &mut symbols,
    );
    crate::lists::merge_symbols(symbols)
}

/// The checks on where links go.
fn link_checks(
    context: &ScanContext<'_>,
    data: &PhishingData,
    named: &[BrandId],
    symbols: &mut Vec<Symbol>,
) {
    let brands = &data.brands;
    for anchor in &context.message.anchors {
        let href = anchor.href.trim_start();
        let scheme = href.get(..11).unwrap_or(href).to_ascii_lowercase();
        if scheme.starts_with("javascript:") {
            symbols.push(Symbol::new("PHISH_URI_JAVASCRIPT"));
        } else if scheme.starts_with("data:") {
            symbols.push(Symbol::new("PHISH_URI_DATA"));
        }
        // The link text shows a brand's site; the link goes elsewhere.
        if let Some(shown) = host_in_text(&anchor.text)
            && let Some(target) = link_host(&anchor.href)
        {
            let target_domain = registrable_domain(&target).unwrap_or(target);
            if let Some(shown_domain) = registrable_domain(&shown)
                && let Some(&brand) = brands.owners(&shown_domain).first()
                && !brands.owns(brand, &target_domain)
            {
                symbols.push(Symbol::new("PHISH_LINK_TEXT_BRAND").with_option(format!(
                    "{} shown, {target_domain} linked",
                    brands.name(brand)
                )));
            }
        }
    }
    let mut domains_seen: Vec<&str> = Vec::new();
    for url in context.link_urls().iter().chain(context.redirect_targets()) {
        if data.shorteners.contains(&url.host, &url.domain) {
            symbols.push(Symbol::new("PHISH_URI_SHORTENER").with_option(url.domain.clone()));
        }
        if url.ip.is_some() {
            continue;
        }
        // Whose the link's own domain is, asked only when a brand shows.
        let owned_by = |brand: &BrandId| brands.owns(*brand, &url.domain);
        // A brand worn as a subdomain: paypal.com.secure-login.example;
        // its bare name (paypal.secure.example) counts where the message
        // names the brand, since apple.slashdot.org is a news section.
        let subdomain = url
            .host
            .strip_suffix(url.domain.as_str())
            .unwrap_or("")
            .trim_end_matches('.');
        let subdomain = subdomain.strip_prefix("www").unwrap_or(subdomain);
        let worn = (subdomain.len() >= 4)
            .then(|| {
                brands
                    .domains_in(subdomain)
                    .into_iter()
                    .chain(
                        brands
                            .labels_in(subdomain)
                            .into_iter()
                            .filter(|(brand, _)| named.contains(brand)),
                    )
                    .find(|brand| !owned_by(&brand.0))
            })
            .flatten();
        if let Some((_, shown)) = worn {
            symbols.push(
                Symbol::new("PHISH_URI_BRAND_SUBDOMAIN")
                    .with_option(format!("{shown} in {}", url.host)),
            );
        }
        // ... or inside the registrable name: paypal-secure.example.
        let name = url.domain.split('.').next().unwrap_or("");
        if name.contains('-')
            && let Some((_, label)) = brands
                .labels_in(name)
                .into_iter()
                .find(|brand| !owned_by(&brand.0))
        {
            symbols.push(
                Symbol::new("PHISH_URI_BRAND_IN_DOMAIN")
                    .with_option(format!("{label} in {}", url.domain)),
            );
        }
        // ... or its domain as a folder of another site: example/paypal.com/.
        if let Some(path) = url.url.splitn(4, '/').nth(3) {
            let path = path.split(['?', '#']).next().unwrap_or("");
            if path.contains('.')
                && let Some((_, shown)) = brands
                    .domains_in(path)
                    .into_iter()
                    .find(|brand| !owned_by(&brand.0))
            {
                symbols.push(
                    Symbol::new("PHISH_URI_BRAND_IN_PATH")
                        .with_option(format!("{shown} on {}", url.domain)),
                );
            }
        }
        if domains_seen.contains(&url.domain.as_str()) || domains_seen.len() >= MAX_DOMAINS {
            continue;
        }
        domains_seen.push(&url.domain);
        if let Some(look) = brands.lookalike(&url.domain, named) {
            let name = if look.how == "confusable" {
                "PHISH_URI_CONFUSABLE"
            } else {
                "PHISH_URI_LOOKALIKE"
            };
            symbols.push(
                Symbol::new(name)
                    .with_option(format!("{} ~ {} ({})", url.domain, look.imitates, look.how)),
            );
        }
        if let Some(mixed) = mixed_script_label(&url.host) {
            symbols.push(Symbol::new("PHISH_URI_MIXED_SCRIPT").with_option(mixed));
        }
    }
}

/// The checks on forms: what they ask for and where they send it.
fn form_checks(
    context: &ScanContext<'_>,
    brands: &Brands,
    named: &[BrandId],
    from_domain: Option<&str>,
    symbols: &mut Vec<Symbol>,
) {
    for form in &context.message.forms {
        let action_domain = link_host(&form.action).map(|host| {
            let domain = registrable_domain(&host);
            domain.unwrap_or(host)
        });
        if form.password {
            symbols.push(Symbol::new("HTML_FORM_PASSWORD"));
        }
        if form.card {
            symbols.push(Symbol::new("HTML_FORM_CARD"));
        }
        if form.attached && (form.password || form.card) {
            symbols.push(Symbol::new("HTML_ATTACHMENT_FORM"));
        }
        if let Some(action) = &action_domain
            && from_domain != Some(action.as_str())
        {
            symbols.push(Symbol::new("HTML_FORM_OFFSITE").with_option(action.clone()));
        }
        // A brand's customers asked for their secrets by a form that does
        // not post to the brand.
        if form.password || form.card {
            let thief = |&brand: &BrandId| {
                action_domain
                    .as_deref()
                    .is_none_or(|domain| !brands.owns(brand, domain))
            };
            if let Some(&brand) = named.iter().find(|b| thief(b)) {
                symbols.push(Symbol::new("PHISH_BRAND_CREDENTIALS").with_option(format!(
                    "{} form to {}",
                    brands.name(brand),
                    action_domain.as_deref().unwrap_or("script")
                )));
            }
        }
    }
}

fn add_new(into: &mut Vec<BrandId>, more: impl IntoIterator<Item = BrandId>) {
    for brand in more {
        if !into.contains(&brand) {
            into.push(brand);
        }
    }
}

/// An address written inside a display name ("service@paypal.com"
/// <x@evil.example>), lowercased.
fn address_in_name(name: &str) -> Option<String> {
    name.split(|c: char| c.is_whitespace() || "<>()\"'[],;".contains(c))
        .find(|token| {
            token
                .split_once('@')
                .is_some_and(|(local, host)| !local.is_empty() && host.contains('.'))
        })
        .map(|token| token.trim_matches('.').to_ascii_lowercase())
}

/// The registrable domain of the (first) address in a header value.
fn address_domain(value: &str) -> Option<String> {
    let address = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.trim(),
    };
    let (_, host) = address.rsplit_once('@')?;
    registrable_domain(host.trim())
}

/// The first host label whose Unicode form mixes scripts (Latin with
/// Cyrillic, ...), as Unicode's mixed-script detection (UTS #39) says.
fn mixed_script_label(host: &str) -> Option<String> {
    use unicode_security::MixedScript;
    host.split('.')
        .filter(|label| label.starts_with("xn--"))
        .map(|label| idna::domain_to_unicode(label).0)
        .find(|unicode| !unicode.as_str().is_single_script())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_display_names_and_header_values() {
        assert_eq!(
            address_in_name("service@paypal.com").as_deref(),
            Some("service@paypal.com")
        );
        assert_eq!(address_in_name("PayPal Service"), None);
        assert_eq!(
            address_domain("PayPal <help@mail.paypal.co.uk>").as_deref(),
            Some("paypal.co.uk")
        );
        assert_eq!(address_domain("nobody"), None);
    }

    #[test]
    fn shown_hosts_need_a_domain_and_nothing_else() {
        assert_eq!(
            host_in_text("https://www.paypal.com/cgi-bin").as_deref(),
            Some("www.paypal.com")
        );
        assert_eq!(
            host_in_text("www.ebay.com").as_deref(),
            Some("www.ebay.com")
        );
        assert_eq!(host_in_text("click here"), None);
        assert_eq!(host_in_text("here."), None);
    }

    #[test]
    fn mixed_scripts_in_idna_labels() {
        let mixed = idna::domain_to_ascii("pаypal.com").unwrap_or_default();
        assert!(mixed_script_label(&mixed).is_some());
        let russian = idna::domain_to_ascii("пример.рф").unwrap_or_default();
        assert_eq!(mixed_script_label(&russian), None);
        assert_eq!(mixed_script_label("paypal.com"), None);
    }
}
