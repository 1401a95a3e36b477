//! The privacy rule's local part (DESIGN §6, "The privacy rule", items 2–5): which cells of
//! an exact job this party lets through. Each party decides alone, from its own rows and
//! its own ledger; its bits enter the MPC as checked shared inputs and only their product
//! per cell is opened, so a party's decision shows only as suppression.
//!
//! Owns the ledger's shape ([`Ledger`]: memberships of this party's individuals in every
//! cell it ever let through, never values), atoms, and the greedy that turns them into
//! keep bits ([`decide`]).
//!
//! # Why it is enough
//!
//! Every exact release is a sum over a cell's individuals of a per-individual constant (1,
//! y or y²). An individual's *pattern* is the set of ledger cells it lies in; individuals
//! with one pattern form an *atom*. Any linear combination of releases is a combination of
//! whole-atom sums, so if every atom holds 0 or at least `min_k` individuals, no combination
//! isolates fewer than `min_k` of this party's individuals — whatever other parties release
//! or know of their own rows (theirs cancel, and their keep bits only delete cells, which
//! merges atoms). The ledger counts every cell this party kept as released, including cells
//! another party then suppressed (conservative), and each version's total once a cell of
//! that version is kept.
//!
//! Individuals are this party's stable local identifiers (the host follows rows across
//! dataset versions). Without a declared identifier, a version that adds rows after any row
//! was removed is frozen: nothing of it is released exactly.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A party's local identifier of one individual (stable across dataset versions).
pub type Individual = u64;

/// The individuals behind a dataset's rows, followed across versions (DESIGN §6, item 3).
///
/// Without a declared identifier a row is followed by its whole content: a row of the next
/// version equal to a row of this one is the same individual; any other row is new, and a
/// row that disappears is removed (an edit is both). Once a row has been removed, a version
/// that adds rows is `frozen`: nothing of it is released exactly (differencing it against
/// earlier versions could give an erased person's value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Population {
    /// One local identifier per row.
    pub ids: Vec<Individual>,
    /// The next identifier to hand out.
    pub next_id: Individual,
    /// Some version removed a row.
    pub removed_ever: bool,
    /// Rows were added after a removal (sticky).
    pub frozen: bool,
}

impl Population {
    /// A first version: rows 0 … n − 1.
    pub fn fresh(rows: usize) -> Self {
        Population {
            ids: (0..rows as u64).collect(),
            next_id: rows as u64,
            removed_ever: false,
            frozen: false,
        }
    }

    /// The population of the next version (columns `next`), following the individuals of
    /// this one (columns `prev`, the same schema; pass no columns when the schema changed:
    /// every row is then new and every old one removed).
    pub fn follow(&self, prev: &[Vec<i64>], next: &[Vec<i64>]) -> Self {
        let rows = |cols: &[Vec<i64>]| cols.first().map_or(0, Vec::len);
        let row = |cols: &[Vec<i64>], r: usize| -> Vec<i64> { cols.iter().map(|c| c[r]).collect() };
        let mut pool: HashMap<Vec<i64>, Vec<Individual>> = HashMap::new();
        for (r, &id) in self.ids.iter().enumerate().take(rows(prev)) {
            pool.entry(row(prev, r)).or_default().push(id);
        }
        let mut next_id = self.next_id;
        let mut added = 0usize;
        let ids: Vec<Individual> = (0..rows(next))
            .map(|r| match pool.get_mut(&row(next, r)).and_then(Vec::pop) {
                Some(id) => id,
                None => {
                    added += 1;
                    next_id += 1;
                    next_id - 1
                }
            })
            .collect();
        let removed =
            pool.values().any(|v| !v.is_empty()) || (rows(prev) == 0 && !self.ids.is_empty());
        let removed_ever = self.removed_ever || removed;
        Population {
            ids,
            next_id,
            removed_ever,
            frozen: self.frozen || (removed_ever && added > 0),
        }
    }
}

/// One cell this party let through: its members as they were at the job's version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedCell {
    /// The job that released it.
    pub job: String,
    /// The dataset version the job read.
    pub version: u64,
    /// The cell's public label (e.g. "group 2", "total").
    pub label: String,
    /// Members, sorted and distinct.
    pub members: Vec<Individual>,
}

/// Everything this party ever let through from one population (memberships, never values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Cells, in the order they were kept.
    pub cells: Vec<ReleasedCell>,
}

impl Ledger {
    /// Whether the total of `version` is already a cell.
    pub fn has_total(&self, version: u64) -> bool {
        self.cells
            .iter()
            .any(|c| c.version == version && c.label == TOTAL)
    }
}

/// The label of a version's total.
pub const TOTAL: &str = "total";

/// A party's decision for one exact job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// One bit per cell of the job, in the job's public cell order.
    pub keep: Vec<bool>,
    /// The cells to append to the ledger before any output share leaves the node.
    pub record: Vec<ReleasedCell>,
    /// Memberships visited: a function of the sizes (ledger, cells, population) alone,
    /// never of what was suppressed (see [`decide`]).
    pub work: u64,
}

/// The job a decision is for.
#[derive(Clone, Debug)]
pub struct JobCells<'a> {
    /// Job id (recorded).
    pub job: &'a str,
    /// Dataset version the job reads.
    pub version: u64,
    /// Members of each cell, in the job's public cell order.
    pub cells: &'a [Vec<Individual>],
    /// The population at this version (the total).
    pub population: &'a [Individual],
    /// No exact release of this version: a frozen population (see the module docs), or a
    /// value column that takes fewer than 2·`min_k` values in it (categorical).
    pub frozen: bool,
}

fn sorted(v: &[Individual]) -> Vec<Individual> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// The individuals lying in an atom of 1 … k − 1 members, over `cells`.
pub fn small_atoms(cells: &[&[Individual]], min_k: u64) -> Vec<Individual> {
    small_atoms_of(cells, &vec![true; cells.len()], min_k).0
}

/// [`small_atoms`] over the `active` cells, visiting every cell's members either way (the
/// work does not depend on which cells are active); also the memberships visited.
fn small_atoms_of(cells: &[&[Individual]], active: &[bool], min_k: u64) -> (Vec<Individual>, u64) {
    let mut visits = 0u64;
    let mut pattern: HashMap<Individual, Vec<u32>> = HashMap::new();
    for (i, c) in cells.iter().enumerate() {
        let on = active[i];
        for &m in *c {
            visits += 1;
            let p = pattern.entry(m).or_default();
            // A cell listing a member twice is still one membership.
            if on && p.last() != Some(&(i as u32)) {
                p.push(i as u32);
            }
        }
    }
    // Members of no active cell form no atom.
    pattern.retain(|_, p| !p.is_empty());
    let mut size: HashMap<&[u32], u64> = HashMap::new();
    for p in pattern.values() {
        *size.entry(p.as_slice()).or_default() += 1;
    }
    let mut out: Vec<Individual> = pattern
        .iter()
        .filter(|(_, p)| size.get(p.as_slice()).is_some_and(|&n| n < min_k))
        .map(|(&m, _)| m)
        .collect();
    out.sort_unstable();
    (out, visits)
}

/// This party's keep bits for a job (DESIGN §6, item 4): keep every cell, then, while some
/// atom over the ledger, the kept cells and (if any cell is kept) this version's total holds
/// 1 … k − 1 individuals, suppress the first kept cell (public order) holding part of one;
/// if only the total or the ledger still splits an atom, keep nothing. Always ends in a
/// state where every atom holds 0 or ≥ `min_k` individuals.
///
/// The work is the same whatever is suppressed: always `cells + 1` rounds, each visiting
/// every membership of the ledger, the job's cells and the total.
pub fn decide(ledger: &Ledger, job: &JobCells<'_>, min_k: u64) -> Decision {
    let n = job.cells.len();
    let cells: Vec<Vec<Individual>> = job.cells.iter().map(|c| sorted(c)).collect();
    let total = sorted(job.population);
    let total_new = !ledger.has_total(job.version);
    let mut all: Vec<&[Individual]> = ledger.cells.iter().map(|c| c.members.as_slice()).collect();
    let first = all.len();
    all.extend(cells.iter().map(Vec::as_slice));
    all.push(&total);
    let mut keep = vec![!job.frozen; n];
    let mut done = job.frozen;
    let mut work = 0u64;
    for _ in 0..=n {
        let any = keep.iter().any(|&k| k);
        let mut active = vec![true; first];
        active.extend(keep.iter().copied());
        active.push(any && total_new);
        let (small, visits) = small_atoms_of(&all, &active, min_k);
        work += visits;
        // Every member looked up, found or not.
        let holds: Vec<bool> = cells
            .iter()
            .map(|c| {
                work += c.len() as u64;
                c.iter()
                    .fold(false, |h, m| h | small.binary_search(m).is_ok())
            })
            .collect();
        if done || !any || small.is_empty() {
            done = true;
            continue;
        }
        match (0..n).find(|&i| keep[i] && holds[i]) {
            Some(i) => keep[i] = false,
            None => keep = vec![false; n],
        }
    }
    let mut record: Vec<ReleasedCell> = (0..n)
        .filter(|&i| keep[i])
        .map(|i| ReleasedCell {
            job: job.job.to_owned(),
            version: job.version,
            label: format!("cell {i}"),
            members: cells[i].clone(),
        })
        .collect();
    if !record.is_empty() && total_new {
        record.push(ReleasedCell {
            job: job.job.to_owned(),
            version: job.version,
            label: TOTAL.to_owned(),
            members: total,
        });
    }
    Decision { keep, record, work }
}

/// Members of each cell of a job, from its `(row, cell)` pairs and the rows' identifiers.
pub fn memberships(
    cell_rows: &[(usize, usize)],
    ids: &[Individual],
    cells: usize,
) -> Vec<Vec<Individual>> {
    let mut out = vec![Vec::new(); cells];
    for &(r, c) in cell_rows {
        if let (Some(cell), Some(&id)) = (out.get_mut(c), ids.get(r)) {
            cell.push(id);
        }
    }
    out
}

/// Per cell: keep it only if this party's own count there is 0 or at least `min_k` (the
/// in-memory harness's rule: one job, no ledger).
pub fn cell_keep(
    layout: &super::local::Layout,
    stats: &super::local::LocalStats,
    min_k: u64,
) -> Vec<bool> {
    let k = i128::from(min_k);
    layout
        .cell_counts(stats)
        .into_iter()
        .map(|c| c == 0 || c >= k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<'a>(cells: &'a [Vec<Individual>], pop: &'a [Individual], version: u64) -> JobCells<'a> {
        JobCells {
            job: "j",
            version,
            cells,
            population: pop,
            frozen: false,
        }
    }

    #[test]
    fn overlapping_bands_cannot_difference_one_person() {
        // 20 people, values 0..20; bands [0,10) and [10,20), then [0,11) and [11,20).
        let pop: Vec<Individual> = (0..20).collect();
        let mut ledger = Ledger::default();
        let first = vec![(0..10).collect::<Vec<_>>(), (10..20).collect()];
        let d = decide(&ledger, &job(&first, &pop, 1), 5);
        assert_eq!(d.keep, vec![true, true]);
        ledger.cells.extend(d.record);
        let second = vec![(0..11).collect::<Vec<_>>(), (11..20).collect()];
        let d = decide(&ledger, &job(&second, &pop, 1), 5);
        assert_eq!(d.keep, vec![false, false], "person 10 would be isolated");
    }

    #[test]
    fn a_cell_beside_the_total_is_its_complement() {
        // Kept: 24 filtered of 25; the total (25) would isolate the 25th person.
        let pop: Vec<Individual> = (0..25).collect();
        let cells = vec![(0..24).collect::<Vec<_>>()];
        let d = decide(&Ledger::default(), &job(&cells, &pop, 1), 10);
        assert_eq!(d.keep, vec![false]);
        assert!(d.record.is_empty());
    }

    #[test]
    fn a_new_version_adding_one_person_is_suppressed() {
        let v1: Vec<Individual> = (0..30).collect();
        let cells1 = vec![v1.clone()];
        let d = decide(&Ledger::default(), &job(&cells1, &v1, 1), 10);
        assert_eq!(d.keep, vec![true]);
        let mut ledger = Ledger::default();
        ledger.cells.extend(d.record);
        let v2: Vec<Individual> = (0..31).collect();
        let cells2 = vec![v2.clone()];
        assert_eq!(decide(&ledger, &job(&cells2, &v2, 2), 10).keep, vec![false]);
        // Ten newcomers at once form an atom of ten: released.
        let v3: Vec<Individual> = (0..40).collect();
        let cells3 = vec![v3.clone()];
        assert_eq!(decide(&ledger, &job(&cells3, &v3, 3), 10).keep, vec![true]);
    }
}
