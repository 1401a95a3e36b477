//! The privacy rule's local part (DESIGN §6, "The privacy rule"): which cells of an exact
//! job this party lets through. Each party decides alone, from its own rows; its bits enter
//! the MPC as checked shared inputs and only their product per cell is opened, so a party's
//! decision shows only as suppression.
//!
//! Owns the keep bits of one party for one job.

use super::local::{Layout, LocalStats};

/// Per cell: keep it only if this party's own count there is 0 or at least `min_k`, so a
/// kept cell never holds 1 … k − 1 of this party's individuals (another party subtracting
/// its own rows from the cell learns a sum over ≥ k or 0 of ours).
pub fn cell_keep(layout: &Layout, stats: &LocalStats, min_k: u64) -> Vec<bool> {
    let k = i128::from(min_k);
    layout
        .cell_counts(stats)
        .into_iter()
        .map(|c| c == 0 || c >= k)
        .collect()
}
