//! Parley enclave: the computation that runs inside the TEE.
#![forbid(unsafe_code)]
