//! Parley keys: identity signing, the local sealed-key backend and envelope encryption.
#![forbid(unsafe_code)]
