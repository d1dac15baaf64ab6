//! redb store.
