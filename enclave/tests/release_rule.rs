//! The privacy rule's greedy and populations (DESIGN §6, items 3–4). The differencing
//! adversary over many random worlds, in process and on real nodes, is in
//! `tests/tests/differencing.rs`.

use parley_enclave::analytics::rule::{self, Individual, JobCells, Ledger, Population};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn rand(rng: &mut ChaCha20Rng, lo: i64, hi: i64) -> i64 {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64
}

fn columns(rows: &[Vec<i64>]) -> Vec<Vec<i64>> {
    (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c]).collect())
        .collect()
}

/// The greedy always ends in a valid state: every atom over the ledger and the kept cells
/// (and the total, when a cell is kept) holds 0 or at least min_k individuals.
#[test]
fn the_greedy_always_ends_valid() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for _ in 0..300 {
        let min_k = rand(&mut rng, 2, 6) as u64;
        let pop: Vec<Individual> = (0..rand(&mut rng, 1, 40) as u64).collect();
        let mut ledger = Ledger::default();
        for j in 0..rand(&mut rng, 1, 6) {
            let cells: Vec<Vec<Individual>> = (0..rand(&mut rng, 1, 6))
                .map(|_| {
                    pop.iter()
                        .copied()
                        .filter(|_| rng.next_u32().is_multiple_of(3))
                        .collect()
                })
                .collect();
            let job = format!("j{j}");
            let d = rule::decide(
                &ledger,
                &JobCells {
                    job: &job,
                    version: 1 + (j % 2) as u64,
                    cells: &cells,
                    population: &pop,
                    frozen: false,
                },
                min_k,
            );
            ledger.cells.extend(d.record);
            let all: Vec<&[Individual]> =
                ledger.cells.iter().map(|c| c.members.as_slice()).collect();
            assert!(
                rule::small_atoms(&all, min_k).is_empty(),
                "an atom below k after job {j}"
            );
        }
    }
}

/// A version that adds rows after a removal is frozen; following rows keeps identifiers.
#[test]
fn populations_follow_rows_and_freeze_after_a_removal() {
    let rows: Vec<Vec<i64>> = (0..10).map(|i| vec![i, 100 + i]).collect();
    let mut cols = columns(&rows);
    let mut pop = Population::fresh(rows.len());
    let before = pop.ids.clone();
    let mut import = |pop: &mut Population, rows: &[Vec<i64>]| {
        let next = columns(rows);
        *pop = pop.follow(&cols, &next);
        cols = next;
    };
    // Appending keeps every identifier and freezes nothing.
    let mut more = rows.clone();
    more.push(vec![50, 50]);
    import(&mut pop, &more);
    assert_eq!(&pop.ids[..10], &before[..]);
    assert!(!pop.frozen);
    // Reordered rows are the same individuals.
    more.reverse();
    import(&mut pop, &more);
    let mut ids = pop.ids.clone();
    ids.sort_unstable();
    assert_eq!(ids, (0..11).collect::<Vec<_>>());
    assert!(!pop.removed_ever);
    // Erasing only: not frozen, but remembered.
    more.remove(0);
    import(&mut pop, &more);
    assert!(pop.removed_ever && !pop.frozen);
    // Adding after it: frozen for good.
    more.push(vec![60, 60]);
    import(&mut pop, &more);
    assert!(pop.frozen);
    more.pop();
    import(&mut pop, &more);
    assert!(pop.frozen, "sticky");
    // An edit is a removal and an addition at once.
    let mut p2 = Population::fresh(rows.len());
    let mut edited = rows.clone();
    edited[3][1] += 1;
    p2 = p2.follow(&columns(&rows), &columns(&edited));
    assert!(p2.frozen && p2.ids[3] == 10);
}

/// The greedy's work is the same whatever it suppresses (the red team's shape: one cell per
/// age, data where every cell is large against data where most cells hold one person):
/// the same memberships visited, so the time peers see does not count suppressed cells.
#[test]
fn the_greedy_does_the_same_work_whatever_it_suppresses() {
    let cells = 121;
    let rows = 3000usize;
    let by_cell = |age_of: &dyn Fn(usize) -> usize| -> Vec<Vec<Individual>> {
        let mut out = vec![Vec::new(); cells];
        for r in 0..rows {
            out[age_of(r)].push(r as Individual);
        }
        out
    };
    let spread = by_cell(&|r| r % cells);
    // Ages 21..120 hold one patient each; everyone else is under 21.
    let lonely = by_cell(&|r| if r < 100 { 21 + r } else { r % 21 });
    let pop: Vec<Individual> = (0..rows as u64).collect();
    let run = |c: &[Vec<Individual>]| {
        rule::decide(
            &Ledger::default(),
            &JobCells {
                job: "j",
                version: 1,
                cells: c,
                population: &pop,
                frozen: false,
            },
            5,
        )
    };
    let (a, b) = (run(&spread), run(&lonely));
    assert!(a.keep.iter().all(|&k| k), "every age holds ≥ 5");
    assert!(
        b.keep.iter().filter(|&&k| !k).count() >= 100,
        "the lonely ages are suppressed"
    );
    assert_eq!(a.work, b.work, "the work depends on what was suppressed");
}
