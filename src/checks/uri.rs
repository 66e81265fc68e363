//! Local URL/domain blocklists (`[url_lists.NAME]`): one symbol per list
//! that a URL of the message matches, the matched entries as options.

use crate::context::ScanContext;
use crate::lists::UrlLists;
use crate::symbol::Symbol;

pub fn check(context: &ScanContext<'_>, lists: &UrlLists) -> Vec<Symbol> {
    if lists.is_empty() || context.urls().is_empty() {
        return Vec::new();
    }
    let mut symbols: Vec<Symbol> = Vec::new();
    for found in lists.find(context.urls()) {
        match symbols.iter_mut().find(|s| s.name == found.symbol) {
            Some(symbol) => symbol.options.push(found.entry),
            None => symbols.push(Symbol::new(found.symbol).with_option(found.entry)),
        }
    }
    symbols
}
