//! Intel TDX quotes: parsing, verification with DCAP collateral, collection.
