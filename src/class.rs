//! The class a message is learned as: what the classifier trains towards,
//! what the stores keep beside each digest and sample. A leaf, so the
//! classifier (which trains on it) and the store (which keeps it) both
//! depend on it without depending on each other.

/// The class a message was learned as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Spam,
    Ham,
}

impl Class {
    /// Its byte in the journal and the model's sample and digest tables.
    pub fn as_u8(self) -> u8 {
        match self {
            Class::Spam => 1,
            Class::Ham => 2,
        }
    }

    pub fn from_u8(value: u8) -> Option<Class> {
        match value {
            1 => Some(Class::Spam),
            2 => Some(Class::Ham),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Spam => "spam",
            Class::Ham => "ham",
        }
    }
}
