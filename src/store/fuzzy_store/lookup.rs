//! The fuzzy store's lookup: exact digests by interpolated search, near
//! copies through their LSH band keys (at most `MAX_PER_BAND` rows a band,
//! `MAX_VERIFY` candidates, most shared bands first), verified against
//! their stored min-hash signatures; the overlay's reports over the model's.

use super::{Current, FuzzyMatch, FuzzyStore, LookupParams, MAX_PER_BAND, MAX_VERIFY};
use crate::fuzzy::{BANDS, FuzzyDigests, MinHash, band_key, similarity};
use crate::store::format::FuzzyEntry;

impl FuzzyStore {
    pub(super) fn overlay_has_signature(&self, digest: u128) -> bool {
        self.overlay.entries.get(&digest).is_some_and(|list| {
            list.iter()
                .any(|(_, s)| s.as_ref().is_some_and(|c| c.minhash.is_some()))
        })
    }

    /// `Some(None)`: deleted in the overlay; `None`: not in the overlay.
    pub(super) fn overlay_state(&self, digest: u128, flag: u32) -> Option<Option<&Current>> {
        self.overlay
            .entries
            .get(&digest)?
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, state)| state.as_ref())
    }

    pub(super) fn model_entry(&self, digest: u128, flag: u32) -> Option<&FuzzyEntry> {
        let entries = self.model.entries();
        self.model
            .find_digest(digest)
            .map(|i| &entries[i])
            .find(|e| e.flag == flag)
    }

    /// The view of a model entry after the overlay.
    pub(super) fn view_of_model(&self, entry: &FuzzyEntry) -> Option<View<'_>> {
        let model_minhash = self.model.minhash_of(entry);
        match self.overlay_state(entry.digest(), entry.flag) {
            Some(None) => None,
            Some(Some(current)) => Some(View {
                flag: entry.flag,
                weight: current.weight,
                last_seen: current.last_seen,
                minhash: model_minhash.or(current.minhash.as_deref()),
            }),
            None => Some(View {
                flag: entry.flag,
                weight: entry.weight,
                last_seen: entry.last_seen,
                minhash: model_minhash,
            }),
        }
    }

    /// Every list `digest` is on, after the overlay.
    pub(super) fn views_of(&self, digest: u128) -> Vec<View<'_>> {
        let entries = self.model.entries();
        let mut views: Vec<View<'_>> = self
            .model
            .find_digest(digest)
            .filter_map(|i| self.view_of_model(&entries[i]))
            .collect();
        if let Some(list) = self.overlay.entries.get(&digest) {
            for (flag, state) in list {
                if let Some(current) = state
                    && self.model_entry(digest, *flag).is_none()
                {
                    views.push(View {
                        flag: *flag,
                        weight: current.weight,
                        last_seen: current.last_seen,
                        minhash: current.minhash.as_deref(),
                    });
                }
            }
        }
        views
    }

    /// The stored digests `digests` match: exact part and attachment
    /// digests, and near-copies of text parts found through the LSH index.
    /// At most one match per (flag, stored digest), the most similar.
    pub fn lookup(&self, digests: &FuzzyDigests, params: &LookupParams) -> Vec<FuzzyMatch> {
        let mut matches: Vec<FuzzyMatch> = Vec::new();
        let live = |view: &View<'_>| {
            view.weight > 0
                && (params.expire_secs == 0
                    || view.last_seen.saturating_add(params.expire_secs) >= params.now)
        };
        let push = |matches: &mut Vec<FuzzyMatch>, flag, digest, similarity, weight| match matches
            .iter_mut()
            .find(|m| m.flag == flag && m.digest == digest)
        {
            Some(existing) if existing.similarity >= similarity => {}
            Some(existing) => existing.similarity = similarity,
            None => matches.push(FuzzyMatch {
                flag,
                digest,
                similarity,
                weight,
            }),
        };
        let mut candidates: Vec<u32> = Vec::with_capacity(BANDS * MAX_PER_BAND);
        let mut overlay_candidates: Vec<u128> = Vec::new();
        for part in &digests.parts {
            for view in self.views_of(part.exact) {
                if live(&view) {
                    push(&mut matches, view.flag, part.exact, 1.0, view.weight);
                }
            }
            candidates.clear();
            overlay_candidates.clear();
            for band in 0..BANDS {
                let key = band_key(&part.minhash, band);
                self.model.band_entries(key, MAX_PER_BAND, &mut candidates);
                if let Some(list) = self.overlay.bands.get(&key) {
                    overlay_candidates.extend(list.iter().take(MAX_PER_BAND));
                }
            }
            // Most shared bands first: the true source shares many.
            candidates.sort_unstable();
            let mut ranked: Vec<(usize, u32)> = Vec::new();
            for run in candidates.chunk_by(|a, b| a == b) {
                ranked.push((run.len(), run[0]));
            }
            ranked.sort_unstable_by_key(|&(hits, _)| std::cmp::Reverse(hits));
            let entries = self.model.entries();
            for &(_, index) in ranked.iter().take(MAX_VERIFY) {
                let Some(entry) = entries.get(index as usize) else {
                    continue;
                };
                let Some(view) = self.view_of_model(entry) else {
                    continue;
                };
                if !live(&view) {
                    continue;
                }
                if let Some(stored) = view.minhash {
                    let s = similarity(stored, &part.minhash);
                    if s >= params.min_similarity {
                        push(&mut matches, view.flag, entry.digest(), s, view.weight);
                    }
                }
            }
            overlay_candidates.sort_unstable();
            overlay_candidates.dedup();
            for &digest in overlay_candidates.iter().take(MAX_VERIFY) {
                for view in self.views_of(digest) {
                    if !live(&view) {
                        continue;
                    }
                    if let Some(stored) = view.minhash {
                        let s = similarity(stored, &part.minhash);
                        if s >= params.min_similarity {
                            push(&mut matches, view.flag, digest, s, view.weight);
                        }
                    }
                }
            }
        }
        for &digest in &digests.attachments {
            for view in self.views_of(digest) {
                if live(&view) {
                    push(&mut matches, view.flag, digest, 1.0, view.weight);
                }
            }
        }
        matches
    }
}
/// A live entry as a lookup sees it.
pub(super) struct View<'a> {
    pub(super) flag: u32,
    pub(super) weight: u32,
    pub(super) last_seen: u64,
    pub(super) minhash: Option<&'a MinHash>,
}
