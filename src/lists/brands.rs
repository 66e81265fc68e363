//! Brands that phishing impersonates, the domains that legitimately speak
//! for them, and the look-ups the phishing check asks of them: which brand a
//! text names, whether a domain is a brand's, and whether a domain only
//! looks like one (edit distance, digit-for-letter swaps, Unicode
//! confusables).
//!
//! The list is data (`rules/brands.toml`, compiled in, plus the admin's
//! files from `[phishing] brands`), because which brands matter depends on
//! the site: a bank's customers are phished with the bank's name.

use std::collections::HashMap;
use std::path::PathBuf;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use serde::Deserialize;

use crate::setting::InvalidSetting;

/// The brand list compiled into the binary.
pub const BUILTIN_BRANDS: &str = include_str!("../../rules/brands.toml");

/// Shorteners known to hide where a link goes, compiled in.
pub const BUILTIN_SHORTENERS: &str = include_str!("../../rules/shorteners.txt");

/// `[phishing]`: the phishing check's switch and its data files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhishingConfig {
    pub enabled: bool,
    /// Brand files read after the built-in list (its format).
    #[serde(default)]
    pub brands: Vec<PathBuf>,
    /// Shortener lists read after the built-in one: one domain a line.
    #[serde(default)]
    pub shorteners: Vec<PathBuf>,
    /// Following shorteners' links to where they lead (with `[network]
    /// enabled`).
    #[serde(default)]
    pub redirects: super::redirects::RedirectConfig,
}

impl PhishingConfig {
    /// Reads every file now, so a typo in one is a configuration error
    /// naming the file rather than a silent gap at scan time.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        // Read and parsed only: the automata are built once, by `load`.
        for path in &self.brands {
            let source = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| InvalidSetting::new("brands", format!("{source}: {e}")))?;
            BrandFile::parse(&text, &source)?;
        }
        for path in &self.shorteners {
            std::fs::read_to_string(path).map_err(|e| {
                InvalidSetting::new("shorteners", format!("{}: {e}", path.display()))
            })?;
        }
        Ok(())
    }

    /// The brands and shorteners of this configuration.
    pub fn load(&self) -> Result<(Brands, Shorteners), InvalidSetting> {
        let mut files = vec![BrandFile::parse(BUILTIN_BRANDS, "rules/brands.toml")?];
        for path in &self.brands {
            let source = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| InvalidSetting::new("brands", format!("{source}: {e}")))?;
            files.push(BrandFile::parse(&text, &source)?);
        }
        let mut shorteners = Shorteners::parse(BUILTIN_SHORTENERS);
        for path in &self.shorteners {
            let text = std::fs::read_to_string(path).map_err(|e| {
                InvalidSetting::new("shorteners", format!("{}: {e}", path.display()))
            })?;
            shorteners.extend(&text);
        }
        Ok((
            Brands::new(files.into_iter().flat_map(|f| f.brand)),
            shorteners,
        ))
    }
}

/// The brand and shortener data the phishing check reads.
pub struct PhishingData {
    pub brands: Brands,
    pub shorteners: Shorteners,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandFile {
    #[serde(default)]
    brand: Vec<BrandEntry>,
}

impl BrandFile {
    /// Parses one brand file; the error names `source`.
    fn parse(text: &str, source: &str) -> Result<BrandFile, InvalidSetting> {
        let problem = |what: String| InvalidSetting::new("brands", format!("{source}: {what}"));
        let file: BrandFile = toml::from_str(text).map_err(|e| problem(e.message().to_owned()))?;
        if let Some(brand) = file
            .brand
            .iter()
            .find(|brand| brand.name.trim().is_empty() || brand.domains.is_empty())
        {
            return Err(problem(format!(
                "brand `{}` needs a name and at least one domain",
                brand.name
            )));
        }
        Ok(file)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandEntry {
    name: String,
    #[serde(default)]
    words: Vec<String>,
    domains: Vec<String>,
}

/// Index of a brand in [`Brands`].
pub type BrandId = usize;

/// A domain that looks like a brand's without being one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookalike {
    pub brand: BrandId,
    /// The brand's label it imitates (`paypal`).
    pub imitates: String,
    /// How: `edit distance 1`, `digits for letters`, `confusable`.
    pub how: &'static str,
}

impl Lookalike {
    /// Found by edit distance alone: `finance` is one edit from `binance`,
    /// so such a match counts only where the message names the brand.
    pub fn by_edit_distance(&self) -> bool {
        self.how.starts_with("edit")
    }
}

/// The brand list, indexed for the check's questions.
#[derive(Debug)]
pub struct Brands {
    names: Vec<String>,
    /// Registrable domain → the brands it belongs to.
    domains: HashMap<String, Vec<BrandId>>,
    /// Label → brands that own it under every public suffix (`paypal.*`).
    any_suffix: HashMap<String, Vec<BrandId>>,
    /// First labels of brand domains, four letters or longer, that are
    /// also a word the brand is named by: what lookalikes, brand subdomains
    /// and brand paths are compared with.
    labels: Vec<(String, BrandId)>,
    /// The same labels by name.
    label_index: HashMap<String, Vec<BrandId>>,
    /// Every word of every brand, and whose it is.
    words: Option<AhoCorasick>,
    word_brand: Vec<BrandId>,
    /// Every brand domain (`paypal.com`; `paypal.` for `paypal.*`), and
    /// whose it is, to find one written inside a host or a path.
    domain_patterns: Option<AhoCorasick>,
    domain_pattern_brand: Vec<BrandId>,
}

/// Shortest brand label compared for lookalikes: a three-letter label is
/// one edit away from a thousand real domains.
const MIN_LABEL: usize = 4;
/// Shortest brand label compared by edit distance.
const MIN_EDITED_LABEL: usize = 6;

impl Brands {
    fn new(entries: impl IntoIterator<Item = BrandEntry>) -> Brands {
        let mut brands = Brands {
            names: Vec::new(),
            domains: HashMap::new(),
            any_suffix: HashMap::new(),
            labels: Vec::new(),
            label_index: HashMap::new(),
            words: None,
            word_brand: Vec::new(),
            domain_patterns: None,
            domain_pattern_brand: Vec::new(),
        };
        let mut words: Vec<String> = Vec::new();
        let mut domain_patterns: Vec<String> = Vec::new();
        for entry in entries {
            let id = match brands.names.iter().position(|n| *n == entry.name) {
                Some(id) => id,
                None => {
                    brands.names.push(entry.name.clone());
                    brands.names.len() - 1
                }
            };
            // Names the brand goes by as one word: `paypal`, and the
            // label of a word that is a domain (`amazon.com`).
            let mut word_tokens: Vec<String> = Vec::new();
            for word in entry.words {
                let word = word.trim().to_lowercase();
                if !word.contains(' ') {
                    word_tokens.push(word.split('.').next().unwrap_or("").to_owned());
                }
                if !word.is_empty() {
                    words.push(word);
                    brands.word_brand.push(id);
                }
            }
            for domain in entry.domains {
                let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
                domain_patterns.push(domain.trim_end_matches('*').to_owned());
                brands.domain_pattern_brand.push(id);
                let label = match domain.strip_suffix(".*") {
                    Some(label) => {
                        brands
                            .any_suffix
                            .entry(label.to_owned())
                            .or_default()
                            .push(id);
                        label.to_owned()
                    }
                    None => {
                        brands.domains.entry(domain.clone()).or_default().push(id);
                        domain.split('.').next().unwrap_or_default().to_owned()
                    }
                };
                // Only labels that are also a one-word name of the brand:
                // `office` (office.com), `live` and `outlook` are everyday
                // words, and `apple` the fruit.
                if label.len() >= MIN_LABEL
                    && word_tokens.contains(&label)
                    && label.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                    && !brands.labels.contains(&(label.clone(), id))
                {
                    brands.labels.push((label, id));
                }
            }
        }
        for (label, brand) in &brands.labels {
            brands
                .label_index
                .entry(label.clone())
                .or_default()
                .push(*brand);
        }
        brands.domain_patterns = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(&domain_patterns)
            .ok();
        // A DFA: this runs over the head of every message's text, and the
        // default (a contiguous NFA) cost several times as much per byte.
        brands.words = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&words)
            .ok();
        brands
    }

    pub fn name(&self, brand: BrandId) -> &str {
        self.names.get(brand).map_or("", String::as_str)
    }

    /// The brands whose domain `domain` (a registrable domain) is.
    pub fn owners(&self, domain: &str) -> Vec<BrandId> {
        let mut owners = self.domains.get(domain).cloned().unwrap_or_default();
        if let Some((label, _)) = domain.split_once('.')
            && let Some(more) = self.any_suffix.get(label)
        {
            owners.extend(more);
        }
        owners
    }

    /// Whether `domain` (registrable) is one of `brand`'s.
    pub fn owns(&self, brand: BrandId, domain: &str) -> bool {
        self.owners(domain).contains(&brand)
    }

    /// The brands `text` names, each once, in order of first mention.
    pub fn named_in(&self, text: &str) -> Vec<BrandId> {
        let mut found = Vec::new();
        let Some(words) = &self.words else {
            return found;
        };
        let bytes = text.as_bytes();
        for hit in words.find_iter(text) {
            let before = hit.start().checked_sub(1).map(|at| bytes[at]);
            let after = bytes.get(hit.end()).copied();
            let boundary = |b: Option<u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric());
            if boundary(before) && boundary(after) {
                let brand = self.word_brand[hit.pattern().as_usize()];
                if !found.contains(&brand) {
                    found.push(brand);
                }
            }
        }
        found
    }

    /// The brand domains written inside `text` (a host's subdomain part, a
    /// path) as whole names: `paypal.com` in `paypal.com.evil.example` or
    /// `/www.paypal.com/login`, `ebay.de` for `ebay.*`; not inside
    /// `mypaypal.community`.
    pub fn domains_in<'t>(&self, text: &'t str) -> Vec<(BrandId, &'t str)> {
        let mut found: Vec<(BrandId, &'t str)> = Vec::new();
        let Some(patterns) = &self.domain_patterns else {
            return found;
        };
        let bytes = text.as_bytes();
        let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
        for hit in patterns.find_overlapping_iter(text) {
            let before_ok = hit.start() == 0 || !name_byte(bytes[hit.start() - 1]);
            let after = bytes.get(hit.end()).copied();
            let any_suffix = bytes[hit.end() - 1] == b'.';
            let mut end = hit.end();
            let after_ok = if any_suffix {
                // `paypal.` then a top-level domain, not `google.gif`.
                let rest = &text[hit.end()..];
                let tld = rest
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                end += tld.len();
                !tld.is_empty()
                    && psl::suffix(tld.as_bytes()).is_some_and(|suffix| suffix.is_known())
            } else {
                after.is_none_or(|b| !name_byte(b))
            };
            let brand = self.domain_pattern_brand[hit.pattern().as_usize()];
            if before_ok && after_ok && !found.iter().any(|(b, _)| *b == brand) {
                found.push((brand, &text[hit.start()..end]));
            }
        }
        found
    }

    /// The brand labels (`paypal`) that appear as a whole dot- or
    /// hyphen-separated token in `text` (a host's subdomain part, a path).
    pub fn labels_in(&self, text: &str) -> Vec<(BrandId, &str)> {
        let mut found: Vec<(BrandId, &str)> = Vec::new();
        for token in text.split(|c: char| !(c.is_ascii_alphanumeric())) {
            if token.len() < MIN_LABEL {
                continue;
            }
            let lower;
            let token = if token.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = token.to_ascii_lowercase();
                lower.as_str()
            } else {
                token
            };
            if let Some((label, owners)) = self.label_index.get_key_value(token) {
                for brand in owners {
                    if !found.iter().any(|(b, _)| b == brand) {
                        found.push((*brand, label.as_str()));
                    }
                }
            }
        }
        found
    }

    /// Whether `domain` (registrable, ASCII or IDNA) imitates a brand's
    /// domain: its first label, read in Unicode, is confusable with a brand
    /// label, spells one with digits for letters (`paypa1`, `micr0soft`,
    /// `rn` for `m`), or, for a brand in `named` (the brands the message
    /// names), is one edit (two for labels of nine letters or more; none under six) from
    /// one: `finance` is one edit from `binance`, so distance alone counts
    /// only where the message speaks of the brand. A domain that is some
    /// brand's own never is. Look-ups by hash, not a scan of every label:
    /// this runs on every link of every message.
    pub fn lookalike(&self, domain: &str, named: &[BrandId]) -> Option<Lookalike> {
        let label = domain.split('.').next()?;
        if label.len() < MIN_LABEL || !self.owners(domain).is_empty() {
            return None;
        }
        let found = |how: &'static str, form: &str| {
            self.label_index
                .get_key_value(form)
                .and_then(|(imitates, brands)| {
                    (imitates.as_str() != label).then(|| Lookalike {
                        brand: brands[0],
                        imitates: imitates.clone(),
                        how,
                    })
                })
        };
        if !label.is_ascii() || label.starts_with("xn--") {
            let unicode = idna::domain_to_unicode(label).0;
            let skeleton: String = unicode_security::skeleton(&unicode).collect();
            return (!unicode.is_ascii())
                .then(|| found("confusable", &skeleton))
                .flatten();
        }
        if label.bytes().any(|b| b.is_ascii_digit()) || label.contains("rn") || label.contains("vv")
        {
            let folded = fold_digits(label);
            if let Some(look) = found("digits for letters", &folded) {
                return Some(look);
            }
        }
        // Edit distance only between names of six letters and more: `mail`
        // is one edit from `gmail`, and mail.com is a mail provider.
        for (brand_label, brand) in &self.labels {
            if !named.contains(brand)
                || brand_label.len() < MIN_EDITED_LABEL
                || label.len() < MIN_EDITED_LABEL - 1
                || brand_label == label
            {
                continue;
            }
            let allowed = if brand_label.len() >= 9 { 2 } else { 1 };
            if brand_label.len().abs_diff(label.len()) > allowed {
                continue;
            }
            let distance = strsim::osa_distance(label, brand_label);
            if distance <= allowed {
                return Some(Lookalike {
                    brand: *brand,
                    imitates: brand_label.clone(),
                    how: if distance == 1 {
                        "edit distance 1"
                    } else {
                        "edit distance 2"
                    },
                });
            }
        }
        None
    }
}

/// Digits and letter pairs that stand in for letters in lookalike domains.
fn fold_digits(label: &str) -> String {
    label
        .replace("rn", "m")
        .replace("vv", "w")
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'l',
            '3' => 'e',
            '4' => 'a',
            '5' => 's',
            '7' => 't',
            '8' => 'b',
            other => other,
        })
        .collect()
}

/// Link shorteners: a registrable domain a line.
#[derive(Debug, Default)]
pub struct Shorteners {
    domains: std::collections::HashSet<String>,
}

impl Shorteners {
    fn parse(text: &str) -> Shorteners {
        let mut shorteners = Shorteners::default();
        shorteners.extend(text);
        shorteners
    }

    fn extend(&mut self, text: &str) {
        for line in text.lines() {
            let domain = line.split('#').next().unwrap_or("").trim();
            if !domain.is_empty() {
                self.domains.insert(domain.to_ascii_lowercase());
            }
        }
    }

    /// Whether a URL with this host and registrable domain is a shortener.
    pub fn contains(&self, host: &str, domain: &str) -> bool {
        self.domains.contains(host) || self.domains.contains(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Brands {
        let config = PhishingConfig {
            enabled: true,
            brands: Vec::new(),
            shorteners: Vec::new(),
            redirects: Default::default(),
        };
        match config.load() {
            Ok((brands, _)) => brands,
            Err(e) => panic!("the built-in brand list must load: {e}"),
        }
    }

    fn brand_of(brands: &Brands, found: Option<Lookalike>) -> Option<String> {
        found.map(|l| format!("{} {}", brands.name(l.brand), l.how))
    }

    #[test]
    fn lookalikes_by_edit_digits_and_confusables_but_never_the_brand_itself() {
        let brands = builtin();
        let every: Vec<BrandId> = (0..brands.names.len()).collect();
        let look = |d: &str| brand_of(&brands, brands.lookalike(d, &every));
        assert_eq!(
            look("paypa1.com").as_deref(),
            Some("PayPal digits for letters")
        );
        assert_eq!(
            look("rnicrosoft.com").as_deref(),
            Some("Microsoft digits for letters")
        );
        assert_eq!(
            look("paypall.com").as_deref(),
            Some("PayPal edit distance 1")
        );
        assert_eq!(
            look("wellsfarg0.com").as_deref(),
            Some("Wells Fargo digits for letters")
        );
        // Cyrillic а in "pаypal": its IDNA form.
        let idna = idna::domain_to_ascii("pаypal.com").unwrap_or_default();
        assert_eq!(look(&idna).as_deref(), Some("PayPal confusable"));
        assert_eq!(look("paypal.com"), None);
        assert_eq!(look("paypal.de"), None);
        assert_eq!(look("ebay.co.uk"), None);
        assert_eq!(look("example.com"), None);
        // Short labels are not compared: every three-letter domain is one
        // edit from another.
        assert_eq!(look("dhk.com"), None);
        // One edit from a brand the message does not name is not enough.
        assert_eq!(brands.lookalike("paypall.com", &[]), None);
        assert!(brands.lookalike("paypa1.com", &[]).is_some());
    }

    #[test]
    fn brands_are_named_by_whole_words_only() {
        let brands = builtin();
        let names = |t: &str| {
            brands
                .named_in(t)
                .into_iter()
                .map(|b| brands.name(b).to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("Your PayPal account"), vec!["PayPal"]);
        assert_eq!(
            names("eBay and Bank of America"),
            vec!["eBay", "Bank of America"]
        );
        assert!(names("rebaycheck paypalish").is_empty());
        assert!(names("we chase the apple").is_empty());
    }

    #[test]
    fn ownership_by_registrable_domain_and_any_suffix() {
        let brands = builtin();
        let paypal = brands.named_in("paypal")[0];
        assert!(brands.owns(paypal, "paypal.com"));
        assert!(brands.owns(paypal, "paypal.co.uk"));
        assert!(!brands.owns(paypal, "paypal-secure.com"));
        assert_eq!(brands.labels_in("paypal.com.secure-login")[0].1, "paypal");
        assert!(brands.labels_in("paypalsecure").is_empty());
        let domains = |text: &str| -> Vec<String> {
            brands
                .domains_in(text)
                .into_iter()
                .map(|(_, d)| d.to_owned())
                .collect()
        };
        assert_eq!(domains("www.paypal.com.verify"), vec!["paypal.com"]);
        assert_eq!(domains("/signin.ebay.de/ws/"), vec!["ebay.de"]);
        assert!(domains("/img/google.gif").is_empty());
        assert!(domains("mypaypal.community").is_empty());
    }

    #[test]
    fn an_admin_file_adds_brands_and_a_broken_one_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("chaff-brands-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let good = dir.join("good.toml");
        let bad = dir.join("bad.toml");
        std::fs::write(
            &good,
            "[[brand]]\nname = \"Example Bank\"\nwords = [\"example bank\"]\ndomains = [\"examplebank.test\"]\n",
        )
        .unwrap_or_default();
        std::fs::write(&bad, "[[brand]]\nname = \"x\"\n").unwrap_or_default();
        let mut config = PhishingConfig {
            enabled: true,
            brands: vec![good],
            shorteners: Vec::new(),
            redirects: Default::default(),
        };
        let Ok((brands, _)) = config.load() else {
            panic!("the good file loads");
        };
        let named = brands.named_in("Dear Example Bank customer");
        assert_eq!(named.len(), 1);
        assert!(brands.owns(named[0], "examplebank.test"));
        config.brands.push(bad.clone());
        let error = config
            .load()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("bad.toml"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap_or_default();
    }
}
