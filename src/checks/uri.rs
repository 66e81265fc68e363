//! Local URL/domain blocklists (`[url_lists.NAME]`): one symbol per list
//! that a URL of the message (or where a shortener link led) matches, the
//! matched entries as options.

use crate::context::ScanContext;
use crate::lists::UrlLists;
use crate::symbol::Symbol;

pub fn check(context: &ScanContext<'_>, lists: &UrlLists) -> Vec<Symbol> {
    if lists.is_empty() {
        return Vec::new();
    }
    // Where shortener links led (when they were followed) is judged with
    // the message's own URLs.
    let followed = context.redirect_targets();
    let mut urls = context.urls();
    let joined;
    if !followed.is_empty() {
        joined = urls.iter().chain(followed).cloned().collect::<Vec<_>>();
        urls = &joined;
    }
    if urls.is_empty() {
        return Vec::new();
    }
    let mut symbols: Vec<Symbol> = Vec::new();
    for found in lists.find(urls) {
        match symbols.iter_mut().find(|s| s.name == found.symbol) {
            Some(symbol) => symbol.options.push(found.entry),
            None => symbols.push(Symbol::new(found.symbol).with_option(found.entry)),
        }
    }
    symbols
}
