//! `parley collateral fetch|status` against a local HTTP server on 127.0.0.1 standing in
//! for AMD KDS and Intel PCS, serving files from `../shared/vectors`; then offline
//! appraisal with the filled cache.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parley_tests::parley_bin;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");
const MILAN_CHIP: &str = "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e";

fn vector(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(VECTORS).join(rel)).unwrap()
}

/// Route → (body, headers).
type Routes = HashMap<String, (Vec<u8>, Vec<(&'static str, String)>)>;

fn pcs_routes(tamper_tcb_info: bool) -> Routes {
    let c: serde_json::Value =
        serde_json::from_slice(&vector("tdx/v4-phala-dcap-qvl/collateral.json")).unwrap();
    let s = |k: &str| c[k].as_str().unwrap().to_owned();
    let enc = |pem: String| {
        percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut tcb_info = s("tcb_info");
    if tamper_tcb_info {
        // One digit of the TCB evaluation data number: the signature no longer covers it.
        tcb_info = tcb_info.replacen(
            "\"tcbEvaluationDataNumber\":17",
            "\"tcbEvaluationDataNumber\":18",
            1,
        );
        assert_ne!(tcb_info, s("tcb_info"));
    }
    let mut r = Routes::new();
    r.insert(
        "/tdx/certification/v4/tcb?fmspc=b0c06f000000".into(),
        (
            format!(
                "{{\"tcbInfo\":{tcb_info},\"signature\":\"{}\"}}",
                s("tcb_info_signature")
            )
            .into_bytes(),
            vec![("TCB-Info-Issuer-Chain", enc(s("tcb_info_issuer_chain")))],
        ),
    );
    r.insert(
        "/tdx/certification/v4/qe/identity".into(),
        (
            format!(
                "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                s("qe_identity"),
                s("qe_identity_signature")
            )
            .into_bytes(),
            vec![(
                "SGX-Enclave-Identity-Issuer-Chain",
                enc(s("qe_identity_issuer_chain")),
            )],
        ),
    );
    r.insert(
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der".into(),
        (
            hex::decode(s("pck_crl")).unwrap(),
            vec![("SGX-PCK-CRL-Issuer-Chain", enc(s("pck_crl_issuer_chain")))],
        ),
    );
    r.insert(
        "/IntelSGXRootCA.der".into(),
        (hex::decode(s("root_ca_crl")).unwrap(), vec![]),
    );
    r
}

fn kds_routes(vcek: &str) -> Routes {
    let mut r = Routes::new();
    r.insert(
        "/vcek/v1/Milan/cert_chain".into(),
        (
            vector("roots/amd/milan/ask_ark_chain.go-sev-guest.pem"),
            vec![],
        ),
    );
    r.insert(
        format!("/vcek/v1/Milan/{MILAN_CHIP}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"),
        (vector(vcek), vec![]),
    );
    r
}

/// Serve `routes` on 127.0.0.1; returns the base URL. Unknown paths are 404.
async fn serve(routes: Routes) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let routes = routes.clone();
                    async move {
                        let key = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        let resp = match routes.get(&key) {
                            Some((body, headers)) => {
                                let mut b = Response::builder();
                                for (k, v) in headers {
                                    b = b.header(*k, v);
                                }
                                b.body(Full::new(Bytes::from(body.clone()))).unwrap()
                            }
                            None => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

async fn parley(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(parley_bin())
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn fetch_args(evidence: &str, dir: &Path, base: &str, at: &str) -> Vec<String> {
    [
        "collateral",
        "fetch",
        "--evidence",
        &format!("{VECTORS}/{evidence}"),
        "--dir",
        &dir.display().to_string(),
        "--kds-url",
        base,
        "--pcs-url",
        base,
        "--root-crl-url",
        &format!("{base}/IntelSGXRootCA.der"),
        "--product",
        "Milan",
        "--attempts",
        "2",
        "--backoff-ms",
        "50",
        "--at",
        at,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_fills_the_cache_for_tdx_and_snp_and_appraisal_uses_it_offline() {
    let mut routes = pcs_routes(false);
    routes.extend(kds_routes("snp/milan-v2-trustee/vcek.der"));
    let base = serve(routes).await;
    let dir = tempfile::tempdir().unwrap();
    let o = parley(fetch_args(
        "tdx/v4-phala-dcap-qvl/quote.bin",
        dir.path(),
        &base,
        "2025-06-20T00:00:00Z",
    ))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let o = parley(fetch_args(
        "snp/milan-v2-trustee/report.bin",
        dir.path(),
        &base,
        "2025-06-20T00:00:00Z",
    ))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("crl-missing"),
        "{}",
        text(&o)
    );
    for f in [
        "tdx/fmspc-b0c06f000000/tcb_info.json",
        "tdx/qe_identity.json",
        "tdx/tcb_signing_chain.pem",
        "tdx/pck_crl_platform.der",
        "tdx/root_ca_crl.der",
        "snp/Milan/cert_chain.pem",
    ] {
        assert!(
            dir.path().join(f).is_file(),
            "{f} missing: {:?}",
            files(dir.path())
        );
    }
    assert_eq!(files(&dir.path().join("snp/Milan/vcek")).len(), 1);

    // status: every item with its expiry.
    let o = parley(vec![
        "collateral".into(),
        "status".into(),
        "--dir".into(),
        dir.path().display().to_string(),
        "--json".into(),
    ])
    .await;
    let items: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let whats: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["what"].as_str().unwrap())
        .collect();
    assert!(
        whats
            .iter()
            .any(|w| w.starts_with("TCB Info for FMSPC b0c06f000000")),
        "{whats:?}"
    );
    assert!(
        whats.iter().any(|w| w.starts_with("QE Identity")),
        "{whats:?}"
    );
    assert!(whats.iter().any(|w| w.starts_with("CRL from")), "{whats:?}");
    assert!(whats.iter().any(|w| w.contains("SEV-VCEK")), "{whats:?}");
    // The 2025 collateral has expired by now: status says so and fails.
    assert!(!o.status.success());

    // Offline appraisal with the cache: a policy drafted from the quote admits it.
    let policy = dir.path().join("policy.toml");
    let quote = format!("{VECTORS}/tdx/v4-phala-dcap-qvl/quote.bin");
    let cache = dir.path().display().to_string();
    let o = parley(vec![
        "policy".into(),
        "from-evidence".into(),
        quote.clone(),
        "--name".into(),
        "tdx-prod".into(),
        "--collateral".into(),
        cache.clone(),
        "--at".into(),
        "2025-06-20T00:00:00Z".into(),
        "--out".into(),
        policy.display().to_string(),
    ])
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let o = parley(vec![
        "attest".into(),
        "verify".into(),
        quote,
        "--policy".into(),
        policy.display().to_string(),
        "--collateral".into(),
        cache,
        "--at".into(),
        "2025-06-20T00:00:00Z".into(),
        "--json".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let ear: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ear["submods"]["tdx"]["ear.status"], "affirming", "{ear}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_refuses_a_wrongly_signed_file_and_stores_nothing() {
    let base = serve(pcs_routes(true)).await;
    let dir = tempfile::tempdir().unwrap();
    let o = parley(fetch_args(
        "tdx/v4-phala-dcap-qvl/quote.bin",
        dir.path(),
        &base,
        "2025-06-20T00:00:00Z",
    ))
    .await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not verify") && err.contains("/tdx/certification/v4/tcb"),
        "{err}"
    );
    assert!(err.contains("nothing was stored"), "{err}");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));

    // A VCEK that is not AMD's (the synthetic negative vector).
    let base = serve(kds_routes(
        "snp/milan-v2-trustee/negative/vcek-invalid-legacy.der",
    ))
    .await;
    let o = parley(fetch_args(
        "snp/milan-v2-trustee/report.bin",
        dir.path(),
        &base,
        "2025-06-20T00:00:00Z",
    ))
    .await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("served a VCEK that does not verify"), "{err}");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_fails_clearly_when_the_server_is_down() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let o = parley(fetch_args(
        "tdx/v4-phala-dcap-qvl/quote.bin",
        dir.path(),
        &base,
        "2025-06-20T00:00:00Z",
    ))
    .await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot reach {base}/tdx/certification/v4/tcb")),
        "{err}"
    );
    assert!(err.contains("after 2 attempts"), "{err}");
    assert!(files(dir.path()).is_empty());
}
