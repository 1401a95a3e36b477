//! The MPC engine against plaintext: sums, products and inner products for n = 3, 5, 7, in
//! both security modes, under reordering and delays; round and traffic counts.

use parley_enclave::engine::{Engine, EngineOutput, Security};
use parley_enclave::field::{Field, M61, M127, M521};
use parley_enclave::program::{Program, ProgramBuilder};
use parley_enclave::prss::KeySetup;
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Fault, Filter, Harness, Order, Outcome, engines, engines_with};
use parley_enclave::{Config, SessionId};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::sync::Arc;

const SESSION: SessionId = SessionId([0x42; 32]);

/// x_i from each party (length len); outputs: Σ_i x_i, Π x_0·x_1 element-wise, ⟨x_0, x_1⟩,
/// and Σ over all of x_0·x_1·x_2 (two rounds of products).
fn mixed_program<F: Field>(n: usize, len: usize) -> Program<F> {
    let mut b = ProgramBuilder::new(n);
    let xs: Vec<_> = (0..n).map(|p| b.input(p, len)).collect();
    let mut total = xs[0];
    for &x in &xs[1..] {
        total = b.add(total, x);
    }
    b.output(total);
    let prod = b.mul(xs[0], xs[1]);
    b.output(prod);
    let ip = b.dot(xs[0], xs[1]);
    b.output(ip);
    let triple = b.mul(prod, xs[2]);
    let s = b.sum(triple);
    b.output(s);
    b.build().expect("valid program")
}

fn plain<F: Field>(inputs: &[Vec<F>]) -> Vec<Vec<F>> {
    let len = inputs[0].len();
    let mut total = vec![F::zero(); len];
    for v in inputs {
        F::add_assign_slice(&mut total, v);
    }
    let mut prod = vec![F::zero(); len];
    F::mul_slices(&mut prod, &inputs[0], &inputs[1]);
    let ip = F::dot(&inputs[0], &inputs[1]);
    let s = F::dot(&prod, &inputs[2]);
    vec![total, prod, vec![ip], vec![s]]
}

fn run<F: Field>(
    t: usize,
    security: Security,
    program: Program<F>,
    inputs: &[Vec<Vec<F>>],
    seed: u64,
    order: Order,
) -> parley_enclave::sim::Report<EngineOutput<F>> {
    let secret: Vec<Vec<SecretVec<F>>> = inputs
        .iter()
        .map(|p| p.iter().map(|v| SecretVec::new(v.clone())).collect())
        .collect();
    let parties = engines(t, security, Arc::new(program), secret, SESSION, seed).expect("valid");
    Harness::new(parties, seed).order(order).run()
}

fn random_inputs<F: Field>(n: usize, len: usize, seed: u64) -> Vec<Vec<F>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..len).map(|_| F::random(&mut rng)).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn sums_products_and_inner_products_match_plaintext(
        n in prop::sample::select(vec![3usize, 5, 7]),
        len in 1usize..12,
        seed in any::<u64>(),
        malicious in any::<bool>(),
        random_order in any::<bool>(),
    ) {
        let t = (n - 1) / 2;
        let security = if malicious { Security::Malicious } else { Security::SemiHonest };
        let order = if random_order { Order::Random } else { Order::Fifo };
        let inputs = random_inputs::<M127>(n, len, seed);
        let program = mixed_program::<M127>(n, len);
        let report = run(t, security, program, &inputs.iter().map(|v| vec![v.clone()]).collect::<Vec<_>>(), seed, order);
        let want = plain(&inputs);
        for o in &report.outcomes {
            let out = o.output();
            prop_assert!(out.is_some(), "{:?}", o);
            prop_assert_eq!(&out.expect("checked").all_values().expect("all delivered"), &want);
        }
    }

    #[test]
    fn small_threshold_and_other_fields(seed in any::<u64>(), malicious in any::<bool>()) {
        let security = if malicious { Security::Malicious } else { Security::SemiHonest };
        // n = 5 with t = 1, and n = 7 with t = 2: more honest parties than t + 1.
        for (n, t) in [(5, 1), (7, 2)] {
            let inputs = random_inputs::<M61>(n, 3, seed);
            let report = run(t, security, mixed_program::<M61>(n, 3), &inputs.iter().map(|v| vec![v.clone()]).collect::<Vec<_>>(), seed, Order::Random);
            for o in &report.outcomes {
                prop_assert_eq!(&o.output().expect("done").all_values().expect("all delivered"), &plain(&inputs));
            }
        }
        let inputs = random_inputs::<M521>(3, 2, seed);
        let report = run(1, security, mixed_program::<M521>(3, 2), &inputs.iter().map(|v| vec![v.clone()]).collect::<Vec<_>>(), seed, Order::Fifo);
        for o in &report.outcomes {
            prop_assert_eq!(&o.output().expect("done").all_values().expect("all delivered"), &plain(&inputs));
        }
    }
}

#[test]
fn linear_ops_constants_openings_and_chunking() {
    // out0 = 3·(x − y) + c, out1 = open(x + r) − r-free check via public ops, out2 = slices.
    let n = 3;
    let mut b = ProgramBuilder::<M127>::new(n);
    let x = b.input(0, 4);
    let y = b.input(2, 4);
    let c = b.constant(vec![
        M127::from_u64(1),
        M127::from_u64(2),
        M127::from_u64(3),
        M127::from_u64(4),
    ]);
    let d = b.sub(x, y);
    let d3 = b.scale(d, M127::from_u64(3));
    let e = b.add(d3, c);
    b.output(e);
    let r = b.random(4);
    let masked = b.add(x, r);
    let opened = b.open(masked); // public x + r
    let back = b.sub(opened, r); // shared again: x
    let neg = b.neg(back);
    let cneg = b.sub(c, neg); // c + x
    b.output(cneg);
    let head = b.slice(x, 0, 2);
    let tail = b.slice(y, 2, 2);
    let cat = b.concat(&[head, tail]);
    let two = b.constant(vec![M127::from_u64(2)]);
    let dbl = b.mul(cat, two);
    b.output(dbl);
    let pub_prod = b.mul(c, c);
    b.output(pub_prod);
    let program = b.build().expect("valid");
    let xs: Vec<M127> = [10, 20, 30, 40].map(M127::from_u64).to_vec();
    let ys: Vec<M127> = [1, 2, 3, 4].map(M127::from_u64).to_vec();
    let inputs = [vec![xs.clone()], vec![], vec![ys.clone()]];
    for security in [Security::SemiHonest, Security::Malicious] {
        let secret: Vec<Vec<SecretVec<M127>>> = inputs
            .iter()
            .map(|p| p.iter().map(|v| SecretVec::new(v.clone())).collect())
            .collect();
        // Tiny chunks: every payload is split into several parts.
        let parties = engines_with(
            1,
            security,
            Arc::new(program.clone()),
            secret,
            SESSION,
            5,
            |c| c.max_chunk_elems = 3,
        )
        .expect("valid");
        let report = Harness::new(parties, 5).order(Order::Random).run();
        let c: Vec<M127> = (1..=4).map(M127::from_u64).collect();
        let want = vec![
            (0..4)
                .map(|i| M127::from_u64(3) * (xs[i] - ys[i]) + c[i])
                .collect::<Vec<_>>(),
            (0..4).map(|i| c[i] + xs[i]).collect(),
            vec![xs[0] + xs[0], xs[1] + xs[1], ys[2] + ys[2], ys[3] + ys[3]],
            c.iter().map(|v| *v * *v).collect(),
        ];
        for o in &report.outcomes {
            assert_eq!(
                o.output()
                    .expect("done")
                    .all_values()
                    .expect("all delivered"),
                want,
                "{security:?}"
            );
        }
    }
}

#[test]
fn delays_and_dropped_messages() {
    let inputs = random_inputs::<M127>(3, 5, 1);
    let nested: Vec<Vec<Vec<M127>>> = inputs.iter().map(|v| vec![v.clone()]).collect();
    let secret = |nested: &Vec<Vec<Vec<M127>>>| -> Vec<Vec<SecretVec<M127>>> {
        nested
            .iter()
            .map(|p| p.iter().map(|v| SecretVec::new(v.clone())).collect())
            .collect()
    };
    let program = Arc::new(mixed_program::<M127>(3, 5));
    let parties = engines(
        1,
        Security::Malicious,
        Arc::clone(&program),
        secret(&nested),
        SESSION,
        1,
    )
    .expect("valid");
    let report = Harness::new(parties, 1)
        .order(Order::Random)
        .fault(Fault::Delay(Filter::from(1).kind("reshare"), 7))
        .fault(Fault::Delay(Filter::from(2).to(0), 3))
        .run();
    for o in &report.outcomes {
        assert_eq!(
            o.output()
                .expect("delays are benign")
                .all_values()
                .expect("all delivered"),
            plain(&inputs)
        );
    }
    // A dropped reshare message stalls the job: no output, no false abort.
    let parties = engines(
        1,
        Security::Malicious,
        Arc::clone(&program),
        secret(&nested),
        SESSION,
        1,
    )
    .expect("valid");
    let report = Harness::new(parties, 1)
        .fault(Fault::Drop(Filter::from(2).kind("reshare").round(2)))
        .run();
    for o in &report.outcomes {
        assert!(matches!(o, Outcome::Stalled(_)), "{o:?}");
    }
    // A party that stops mid-job leaves everyone without output.
    let parties =
        engines(1, Security::Malicious, program, secret(&nested), SESSION, 1).expect("valid");
    let report = Harness::new(parties, 1)
        .fault(Fault::Stop {
            party: 1,
            at_round: 3,
        })
        .run();
    for o in &report.outcomes {
        assert!(o.output().is_none(), "{o:?}");
    }
}

fn mul_program(n: usize, len: usize) -> Program<M127> {
    let mut b = ProgramBuilder::new(n);
    let x = b.input(0, len);
    let y = b.input(1, len);
    let z = b.mul(x, y);
    let s = b.sum(z);
    b.output(s);
    b.build().expect("valid")
}

#[test]
fn rounds_and_bytes_per_multiplication_match_the_design() {
    let len = 1000;
    for (n, t) in [(3usize, 1usize), (5, 2), (7, 3)] {
        let inputs: Vec<Vec<SecretVec<M127>>> = (0..n)
            .map(|p| {
                if p < 2 {
                    vec![SecretVec::new(vec![M127::from_u64(3); len])]
                } else {
                    vec![]
                }
            })
            .collect();
        for security in [Security::SemiHonest, Security::Malicious] {
            let secret: Vec<Vec<SecretVec<M127>>> = inputs
                .iter()
                .map(|p| p.iter().map(SecretVec::duplicate).collect())
                .collect();
            let parties = engines(
                t,
                security,
                Arc::new(mul_program(n, len)),
                secret,
                SESSION,
                2,
            )
            .expect("valid");
            let report = Harness::new(parties, 2).run();
            for o in &report.outcomes {
                assert_eq!(
                    o.output()
                        .expect("done")
                        .all_values()
                        .expect("all delivered"),
                    vec![vec![M127::from_u64(9 * len as u64)]]
                );
            }
            // Party n−1 has no input: its traffic is the protocol's alone.
            let tr = &report.traffic[n - 1];
            let elem = 16u64;
            let per_mult = (n - 1 - t) as u64 * elem;
            let (rounds, bytes) = match security {
                // inputs (commit only) + 1 mult + output opening.
                Security::SemiHonest => (
                    3,
                    32 * (n as u64 - 1) + per_mult * len as u64 + (n as u64 - 1) * elem,
                ),
                // + input MACs (only x, the MAC'd factor) + mult (x·y and r·x·y) + V1 (2)
                // + V2 (1 reshare, 1 open) + V3 (1).
                Security::Malicious => (
                    7,
                    32 * (n as u64 - 1)
                        + per_mult * len as u64
                        + per_mult * (2 * len as u64)
                        + (n as u64 - 1) * elem * 2
                        + per_mult
                        + (n as u64 - 1) * elem
                        + (n as u64 - 1) * elem
                        + (n as u64 - 1) * elem,
                ),
            };
            assert_eq!(tr.rounds, rounds, "n = {n}, {security:?}");
            assert_eq!(tr.payload_bytes, bytes, "n = {n}, {security:?}");
        }
    }
}

#[test]
fn engine_runs_on_keys_from_a_real_key_setup() {
    let n = 5;
    let t = 2;
    let points: Vec<u64> = (1..=n as u64).collect();
    let setups: Vec<KeySetup> = (0..n)
        .map(|me| {
            KeySetup::new(
                Config::new(me, points.clone(), t, SessionId([1; 32])),
                ChaCha20Rng::seed_from_u64(me as u64),
            )
            .expect("valid")
        })
        .collect();
    let (_, done) = Harness::new(setups, 0).run_into_parties();
    let keys: Vec<_> = done
        .into_iter()
        .map(|s| s.into_keys().expect("agreed"))
        .collect();
    let program = Arc::new(mixed_program::<M127>(n, 2));
    let inputs = random_inputs::<M127>(n, 2, 8);
    let parties: Vec<Engine<M127>> = keys
        .iter()
        .enumerate()
        .map(|(me, k)| {
            let cfg = Config::new(me, points.clone(), t, SESSION);
            let input = vec![SecretVec::new(inputs[me].clone())];
            Engine::new(
                cfg,
                Security::Malicious,
                Arc::clone(&program),
                input,
                k,
                ChaCha20Rng::seed_from_u64(50 + me as u64),
            )
            .expect("valid")
        })
        .collect();
    let report = Harness::new(parties, 3).order(Order::Random).run();
    let commitments = &report.outcomes[0].output().expect("done").commitments;
    for o in &report.outcomes {
        let out = o.output().expect("done");
        assert_eq!(out.all_values().expect("all delivered"), plain(&inputs));
        assert_eq!(
            &out.commitments, commitments,
            "every party keeps the same commitments"
        );
    }
}

#[test]
fn commitments_open_to_the_inputs() {
    let inputs = random_inputs::<M127>(3, 4, 9);
    let secret: Vec<Vec<SecretVec<M127>>> = inputs
        .iter()
        .map(|v| vec![SecretVec::new(v.clone())])
        .collect();
    let parties = engines(
        1,
        Security::Malicious,
        Arc::new(mixed_program::<M127>(3, 4)),
        secret,
        SESSION,
        9,
    )
    .expect("valid");
    let mut harness = Harness::new(parties, 9);
    let report = harness.run();
    let out = report.outcomes[1].output().expect("done");
    for (p, engine) in harness.parties().iter().enumerate() {
        assert!(out.commitments[p].verify(&SESSION, p, engine.commitment_opening(), &inputs[p]));
        assert!(!out.commitments[p].verify(
            &SESSION,
            (p + 1) % 3,
            engine.commitment_opening(),
            &inputs[p]
        ));
    }
}

#[test]
fn debug_never_shows_shares() {
    let parties = engines(
        1,
        Security::Malicious,
        Arc::new(mixed_program::<M127>(3, 1)),
        vec![
            vec![SecretVec::new(vec![M127::from_u64(31_415_926)])],
            vec![SecretVec::new(vec![M127::one()])],
            vec![SecretVec::new(vec![M127::one()])],
        ],
        SESSION,
        4,
    )
    .expect("valid");
    let dbg = format!("{:?}", parties[0]);
    assert!(!dbg.contains("31415926"), "{dbg}");
    assert!(dbg.contains("Malicious"));
}

#[test]
fn wrong_inputs_are_refused() {
    let program = Arc::new(mixed_program::<M127>(3, 2));
    let bad = vec![
        vec![SecretVec::new(vec![M127::one(); 3])],
        vec![SecretVec::new(vec![M127::one(); 2])],
        vec![SecretVec::new(vec![M127::one(); 2])],
    ];
    let err = engines(1, Security::SemiHonest, program, bad, SESSION, 1).expect_err("length");
    assert_eq!(
        err.to_string(),
        "invalid local input: the program expects inputs of lengths [2] from party 0, got [3]"
    );
}

#[test]
fn security_model_names_round_trip() {
    for s in [Security::SemiHonest, Security::Malicious] {
        assert_eq!(s.to_string().parse::<Security>().expect("known"), s);
    }
    let err = "fallback".parse::<Security>().expect_err("unknown");
    assert!(
        err.to_string()
            .contains("unknown security model \"fallback\""),
        "{err}"
    );
}
