//! Nodes configured for hardware evidence (`[attestation] mode = "snp" | "tdx"`): outside a
//! confidential VM they refuse to start with the mode and the interface named, and never
//! fall back to simulated evidence; a collateral cache that cannot be read stops the node
//! before it listens.

use parley::config::AttestationMode;
use parley_tests::Setup;

fn run_node(config: &std::path::Path) -> (bool, String) {
    parley_tests::run(
        &parley_tests::parley_bin(),
        &["node".as_ref(), "--config".as_ref(), config.as_os_str()],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hardware_mode_node_outside_a_cvm_refuses_to_start_and_names_why() {
    let setup = Setup::new(10).await;
    let a = setup.fed.party("hospital-a").unwrap().clone();
    // A plain directory stands in for configfs-tsm: the kernel never fills the entry.
    let fake = setup.tmp.path().join("fake-tsm");
    std::fs::create_dir_all(&fake).unwrap();
    for (mode, name) in [(AttestationMode::Snp, "snp"), (AttestationMode::Tdx, "tdx")] {
        let root = fake.clone();
        setup
            .fed
            .edit_config("hospital-a", move |c| {
                c.attestation.mode = mode;
                c.attestation.tsm_root = Some(root);
            })
            .unwrap();
        let (ok, err) = run_node(&a.config);
        assert!(!ok, "{name}: started without a TEE");
        assert!(
            err.contains(&format!("configured for {name} evidence")),
            "{name}: {err}"
        );
        assert!(
            err.contains("fake-tsm"),
            "{name}: the interface is named: {err}"
        );
        // The request entry it created is removed again.
        assert_eq!(std::fs::read_dir(&fake).unwrap().count(), 0, "{name}");
        // The preflight says the same before anyone starts the node.
        let (ok, out) = parley_tests::run(
            &parley_tests::parley_bin(),
            &[
                "node".as_ref(),
                "check".as_ref(),
                "--config".as_ref(),
                a.config.as_os_str(),
            ],
        );
        assert!(
            !ok && out.contains("FAIL  node start-up")
                && out.contains(&format!("configured for {name} evidence")),
            "{name}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_collateral_cache_stops_the_node_with_the_fix_named() {
    let setup = Setup::new(10).await;
    let a = setup.fed.party("hospital-a").unwrap().clone();
    let missing = setup.tmp.path().join("no-such-cache");
    setup
        .fed
        .edit_config("hospital-a", move |c| {
            c.attestation.collateral = Some(missing)
        })
        .unwrap();
    let (ok, err) = run_node(&a.config);
    assert!(!ok);
    assert!(
        err.contains("no-such-cache") && err.contains("parley collateral fetch"),
        "{err}"
    );
}
