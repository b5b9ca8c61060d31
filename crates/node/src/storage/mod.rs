//! Storage behind a narrow trait (see the storage helper's work).
