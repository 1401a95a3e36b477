//! How secret files (the local KEK keyring, an AppRole secret-id) are protected at rest.
//!
//! [`FileProtector`] turns the plaintext of a secret file into the bytes stored on disk and
//! back. [`PlainFile`] stores it as is in a 0600 file: whoever can read the disk (the host
//! operator) can read it.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::KeyError;

/// Protects a secret file's contents at rest.
pub trait FileProtector: Send + Sync + fmt::Debug {
    fn describe(&self) -> String;
    fn protect(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError>;
    fn unprotect(&self, path: &Path, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError>;
}

/// No protection beyond the file mode: the host operator can read the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFile;

impl FileProtector for PlainFile {
    fn describe(&self) -> String {
        "plain 0600 file".into()
    }
    fn protect(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(plaintext.to_vec())
    }
    fn unprotect(&self, _: &Path, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        Ok(Zeroizing::new(stored.to_vec()))
    }
}

// ---------------------------------------------------------------------------------------
// Sealing to the TEE.
//
// On AMD SEV-SNP the guest asks the secure processor for a key derived from a chip root key
// (VCEK) mixed with chosen fields of its launch (MSG_KEY_REQ through /dev/sev-guest). Parley
// leaves the launch MEASUREMENT out of the selection, so a new image (an upgrade) derives
// the same key; it mixes in the guest policy (a debug VM gets another key), the family and
// image ids, the guest SVN and a TCB version (firmware older than the recorded TCB can't
// derive it). The chip key means a move to another host can't: for that, and for anything
// else that changes the key, every sealed file also carries a recovery wrap to an offline
// operator key (HPKE, RFC 9180). What this does and doesn't protect is in ARCHITECTURE.md:
// without the measurement, another image the host launches on the same chip with the same
// policy and ids derives the same key.
//
// Intel TDX has no sealing key: a TD can't derive a persistent key from the platform. On TDX
// use the Vault backend (release gated on attestation, later) or accept that the host can
// read the keyring file; `TeeSealed` is SNP-only.
// ---------------------------------------------------------------------------------------

use std::sync::Arc;

use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};

use crate::codec::Reader;

type RecoveryKem = hpke::kem::X25519HkdfSha256;
type RecoveryAead = hpke::aead::ChaCha20Poly1305;
type RecoveryKdf = hpke::kdf::HkdfSha256;

const SEALED_MAGIC: &[u8; 4] = b"PTS1";
const SEAL_LABEL: &[u8] = b"parley-keys/tee-seal/v1";
const RECOVERY_INFO: &[u8] = b"parley-keys/recovery/v1";

/// Bits of MSG_KEY_REQ's GUEST_FIELD_SELECT (SEV-SNP firmware ABI, table "MSG_KEY_REQ").
pub mod field {
    pub const GUEST_POLICY: u64 = 1 << 0;
    pub const IMAGE_ID: u64 = 1 << 1;
    pub const FAMILY_ID: u64 = 1 << 2;
    pub const MEASUREMENT: u64 = 1 << 3;
    pub const GUEST_SVN: u64 = 1 << 4;
    pub const TCB_VERSION: u64 = 1 << 5;
}

/// A derived-key request. Recorded in each sealed file, so unsealing asks for the same key
/// even after the configuration changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRequest {
    /// Which fields are mixed in ([`field`] bits).
    pub field_select: u64,
    /// VMPL mixed in; must be ≥ the guest's current VMPL.
    pub vmpl: u32,
    /// Guest SVN mixed in; must not exceed the SVN in the launch ID block.
    pub guest_svn: u32,
    /// TCB version mixed in; must not exceed the committed TCB.
    pub tcb_version: u64,
}

impl KeyRequest {
    /// Parley's selection: everything but the measurement (see the section comment).
    pub fn without_measurement(vmpl: u32, guest_svn: u32, tcb_version: u64) -> Self {
        KeyRequest {
            field_select: field::GUEST_POLICY
                | field::IMAGE_ID
                | field::FAMILY_ID
                | field::GUEST_SVN
                | field::TCB_VERSION,
            vmpl,
            guest_svn,
            tcb_version,
        }
    }

    fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.field_select.to_be_bytes());
        out[8..12].copy_from_slice(&self.vmpl.to_be_bytes());
        out[12..16].copy_from_slice(&self.guest_svn.to_be_bytes());
        out[16..].copy_from_slice(&self.tcb_version.to_be_bytes());
        out
    }
}

/// The guest device that derives sealing keys. [`SevGuestDevice`] is the real one;
/// [`FakeSnpDevice`] models it for tests.
pub trait SealingDevice: Send + Sync + fmt::Debug {
    fn name(&self) -> String;
    /// MSG_KEY_REQ with the VCEK as root key.
    fn derive_key(&self, req: &KeyRequest) -> Result<Zeroizing<[u8; 32]>, KeyError>;
}

/// `/dev/sev-guest` through the `sev` crate (its ioctl is the only unsafe code involved,
/// inside that crate). Needs an SNP guest kernel; fails with a typed error elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct SevGuestDevice;

impl SealingDevice for SevGuestDevice {
    fn name(&self) -> String {
        "/dev/sev-guest".into()
    }
    fn derive_key(&self, req: &KeyRequest) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        use sev::firmware::guest::{DerivedKey, Firmware, GuestFieldSelect};
        let err = |reason: String| KeyError::Sealing {
            device: self.name(),
            reason,
        };
        let mut fw = Firmware::open().map_err(|e| {
            err(format!(
                "cannot open the SNP guest device ({e}); is this an SEV-SNP guest? On TDX or \
                 ordinary hardware set keys.local.seal = \"none\""
            ))
        })?;
        // Message version 1: no launch-mitigation vector (firmware before 1.58 accepts it too).
        let request = DerivedKey::new(
            false,
            GuestFieldSelect(req.field_select),
            req.vmpl,
            req.guest_svn,
            req.tcb_version,
            None,
        );
        let key = fw
            .get_derived_key(Some(1), request)
            .map_err(|e| err(format!("MSG_KEY_REQ refused: {e}")))?;
        Ok(Zeroizing::new(key))
    }
}

/// A model of the SNP key derivation for tests: a chip secret and the guest's launch
/// values; only the selected fields enter the key, and requests above the launched SVN or
/// the committed TCB are refused, as the firmware does.
#[derive(Clone)]
pub struct FakeSnpDevice {
    pub chip_secret: [u8; 32],
    pub measurement: [u8; 48],
    pub policy: u64,
    pub image_id: [u8; 16],
    pub family_id: [u8; 16],
    pub guest_svn: u32,
    pub committed_tcb: u64,
}

impl fmt::Debug for FakeSnpDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FakeSnpDevice")
    }
}

impl FakeSnpDevice {
    /// A guest on a fresh random chip.
    pub fn new() -> Self {
        let mut chip_secret = [0u8; 32];
        let _ = SystemRandom::new().fill(&mut chip_secret);
        FakeSnpDevice {
            chip_secret,
            measurement: [1; 48],
            policy: 0x30000,
            image_id: [2; 16],
            family_id: [3; 16],
            guest_svn: 1,
            committed_tcb: 10,
        }
    }
}

impl Default for FakeSnpDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl SealingDevice for FakeSnpDevice {
    fn name(&self) -> String {
        "fake SNP guest device".into()
    }
    fn derive_key(&self, req: &KeyRequest) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        if req.guest_svn > self.guest_svn || req.tcb_version > self.committed_tcb {
            return Err(KeyError::Sealing {
                device: self.name(),
                reason: "MSG_KEY_REQ refused: SVN or TCB above the launched values".into(),
            });
        }
        let s = req.field_select;
        let mut mix = Vec::new();
        mix.extend_from_slice(&req.encode());
        let mut add = |bit: u64, bytes: &[u8]| {
            if s & bit != 0 {
                mix.extend_from_slice(bytes);
            }
        };
        add(field::GUEST_POLICY, &self.policy.to_be_bytes());
        add(field::IMAGE_ID, &self.image_id);
        add(field::FAMILY_ID, &self.family_id);
        add(field::MEASUREMENT, &self.measurement);
        let mut key = Zeroizing::new([0u8; 32]);
        Salt::new(HKDF_SHA256, &self.chip_secret)
            .extract(&mix)
            .expand(&[b"fake-snp-derived-key"], HkdfLen32)
            .and_then(|okm| okm.fill(key.as_mut()))
            .map_err(|_| KeyError::Crypto("HKDF"))?;
        Ok(key)
    }
}

struct HkdfLen32;
impl ring::hkdf::KeyType for HkdfLen32 {
    fn len(&self) -> usize {
        32
    }
}

/// An operator's offline recovery public key (X25519), text `x25519:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPublicKey([u8; 32]);

impl fmt::Display for RecoveryPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "x25519:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for RecoveryPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryPublicKey({self})")
    }
}

impl std::str::FromStr for RecoveryPublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::Config {
            reason: format!("recovery public key {s:?} is not x25519:<64 hex digits>"),
        };
        let bytes = s
            .strip_prefix("x25519:")
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(bad)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        <RecoveryKem as hpke::Kem>::PublicKey::from_bytes(&arr).map_err(|_| bad())?;
        Ok(RecoveryPublicKey(arr))
    }
}

/// The private half, kept offline by the operator; used only to recover a sealed file.
pub struct RecoveryPrivateKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for RecoveryPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryPrivateKey(<redacted>)")
    }
}

impl RecoveryPrivateKey {
    /// A fresh key pair (run on the operator's offline machine).
    pub fn generate() -> Result<Self, KeyError> {
        let mut ikm = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(ikm.as_mut())
            .map_err(|_| KeyError::Random)?;
        let (sk, _) = RecoveryKem::derive_keypair(ikm.as_ref());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&sk.to_bytes());
        Ok(RecoveryPrivateKey(out))
    }

    /// Parse the 32-byte key from its file form (64 hex digits).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| KeyError::Config {
            reason: "the recovery private key is not hexadecimal".into(),
        })?);
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Config {
            reason: "the recovery private key is not 32 bytes".into(),
        })?;
        Ok(RecoveryPrivateKey(Zeroizing::new(arr)))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    pub fn public(&self) -> Result<RecoveryPublicKey, KeyError> {
        let sk = <RecoveryKem as hpke::Kem>::PrivateKey::from_bytes(self.0.as_ref())
            .map_err(|_| KeyError::Crypto("X25519 private key"))?;
        let pk = RecoveryKem::sk_to_pk(&sk);
        let mut out = [0u8; 32];
        out.copy_from_slice(&pk.to_bytes());
        Ok(RecoveryPublicKey(out))
    }
}

/// Seals a file's contents twice: to the TEE-derived key, and to the recovery key.
///
/// Format: `"PTS1" ‖ request (24 bytes) ‖ recovery public key (32) ‖ nonce (12) ‖ len u32 ‖
/// AES-256-GCM ciphertext ‖ encapsulated key (32) ‖ len u32 ‖ HPKE ciphertext`. The header
/// (magic, request, recovery key) is the associated data of both.
#[derive(Debug, Clone)]
pub struct TeeSealed {
    device: Arc<dyn SealingDevice>,
    request: KeyRequest,
    recovery: RecoveryPublicKey,
}

struct Parsed<'a> {
    header: &'a [u8],
    request: KeyRequest,
    nonce: [u8; NONCE_LEN],
    sealed: &'a [u8],
    encapped: &'a [u8],
    recovery_ct: &'a [u8],
}

impl TeeSealed {
    pub fn new(
        device: Arc<dyn SealingDevice>,
        request: KeyRequest,
        recovery: RecoveryPublicKey,
    ) -> Self {
        TeeSealed {
            device,
            request,
            recovery,
        }
    }

    fn aead_key(derived: &[u8; 32], header: &[u8]) -> Result<LessSafeKey, KeyError> {
        let prk = Salt::new(HKDF_SHA256, SEAL_LABEL).extract(derived);
        let info = [header];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| KeyError::Crypto("HKDF"))?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }

    fn parse<'a>(path: &Path, stored: &'a [u8]) -> Result<Parsed<'a>, KeyError> {
        let bad = |reason: &str| KeyError::Malformed {
            path: path.to_owned(),
            reason: format!("TEE-sealed file: {reason}"),
        };
        let mut r = Reader::new(stored);
        r.magic(SEALED_MAGIC, "magic").map_err(|_| {
            bad("not a TEE-sealed file (expected PTS1); was it written with seal = \"none\"?")
        })?;
        let field_select = r.u64("request").map_err(|e| bad(e.0))?;
        let vmpl = r.u32("request").map_err(|e| bad(e.0))?;
        let guest_svn = r.u32("request").map_err(|e| bad(e.0))?;
        let tcb_version = r.u64("request").map_err(|e| bad(e.0))?;
        r.take(32, "recovery key").map_err(|e| bad(e.0))?;
        let header = &stored[..4 + 24 + 32];
        let nonce = r.array::<NONCE_LEN>("nonce").map_err(|e| bad(e.0))?;
        let n = r.u32("length").map_err(|e| bad(e.0))?;
        let sealed = r
            .take(usize::try_from(n).unwrap_or(usize::MAX), "sealed copy")
            .map_err(|e| bad(e.0))?;
        let encapped = r.take(32, "encapsulated key").map_err(|e| bad(e.0))?;
        let n = r.u32("length").map_err(|e| bad(e.0))?;
        let recovery_ct = r
            .take(usize::try_from(n).unwrap_or(usize::MAX), "recovery copy")
            .map_err(|e| bad(e.0))?;
        r.finish().map_err(|e| bad(e.0))?;
        Ok(Parsed {
            header,
            request: KeyRequest {
                field_select,
                vmpl,
                guest_svn,
                tcb_version,
            },
            nonce,
            sealed,
            encapped,
            recovery_ct,
        })
    }

    /// Open a sealed file with the recovery private key (on a new host, after the TEE key
    /// changed); the caller seals the result again with its own device.
    pub fn recover(
        path: &Path,
        stored: &[u8],
        key: &RecoveryPrivateKey,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let p = Self::parse(path, stored)?;
        let fail = || KeyError::UnsealFailed {
            what: format!(
                "{} with the recovery key (wrong key, or the file was altered)",
                path.display()
            ),
        };
        let sk = <RecoveryKem as hpke::Kem>::PrivateKey::from_bytes(key.0.as_ref())
            .map_err(|_| fail())?;
        let encapped =
            <RecoveryKem as hpke::Kem>::EncappedKey::from_bytes(p.encapped).map_err(|_| fail())?;
        let pt = hpke::single_shot_open::<RecoveryAead, RecoveryKdf, RecoveryKem>(
            &OpModeR::Base,
            &sk,
            &encapped,
            RECOVERY_INFO,
            p.recovery_ct,
            p.header,
        )
        .map_err(|_| fail())?;
        Ok(Zeroizing::new(pt))
    }
}

impl FileProtector for TeeSealed {
    fn describe(&self) -> String {
        format!(
            "sealed by {} (measurement not bound), recovery key {}",
            self.device.name(),
            self.recovery
        )
    }

    fn protect(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut header = Vec::with_capacity(60);
        header.extend_from_slice(SEALED_MAGIC);
        header.extend_from_slice(&self.request.encode());
        header.extend_from_slice(&self.recovery.0);
        let derived = self.device.derive_key(&self.request)?;
        let key = Self::aead_key(&derived, &header)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Random)?;
        let mut sealed = Zeroizing::new(plaintext.to_vec());
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&header),
            &mut *sealed,
        )
        .map_err(|_| KeyError::Crypto("AES-256-GCM seal"))?;
        let pk = <RecoveryKem as hpke::Kem>::PublicKey::from_bytes(&self.recovery.0)
            .map_err(|_| KeyError::Crypto("X25519 public key"))?;
        let (encapped, recovery_ct) = hpke::single_shot_seal::<
            RecoveryAead,
            RecoveryKdf,
            RecoveryKem,
        >(
            &OpModeS::Base, &pk, RECOVERY_INFO, plaintext, &header
        )
        .map_err(|_| KeyError::Crypto("HPKE seal"))?;
        let len =
            |n: usize| u32::try_from(n).map_err(|_| KeyError::Crypto("sealed file too large"));
        let mut out = header;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&len(sealed.len())?.to_be_bytes());
        out.extend_from_slice(&sealed);
        out.extend_from_slice(&encapped.to_bytes());
        out.extend_from_slice(&len(recovery_ct.len())?.to_be_bytes());
        out.extend_from_slice(&recovery_ct);
        Ok(out)
    }

    fn unprotect(&self, path: &Path, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let p = Self::parse(path, stored)?;
        // The request recorded in the file, not the configured one: it must be the same key.
        let derived = self.device.derive_key(&p.request)?;
        let key = Self::aead_key(&derived, p.header)?;
        let mut buf = Zeroizing::new(p.sealed.to_vec());
        let n = key
            .open_in_place(Nonce::assume_unique_for_key(p.nonce), Aad::from(p.header), buf.as_mut_slice())
            .map_err(|_| KeyError::Sealing {
                device: self.device.name(),
                reason: format!(
                    "the TEE-derived key does not open {} (another chip, or a changed guest policy, \
                     image/family id or VMPL); recover it with the offline recovery key",
                    path.display()
                ),
            })?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

/// Seal a secret (e.g. an AppRole secret-id received response-wrapped) into a new 0600
/// file, for `SecretSource::SealedFile`. Run inside the guest.
pub fn seal_secret_file(
    protector: &dyn FileProtector,
    secret: &str,
    path: &Path,
) -> Result<(), KeyError> {
    let stored = protector.protect(secret.as_bytes())?;
    crate::local::write_new_secret_file(path, "sealed secret", &stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(dev: &FakeSnpDevice, rk: &RecoveryPrivateKey) -> TeeSealed {
        TeeSealed::new(
            Arc::new(dev.clone()),
            KeyRequest::without_measurement(0, 1, 8),
            rk.public().unwrap(),
        )
    }

    #[test]
    fn unseal_after_upgrade_recover_after_host_move() {
        let path = Path::new("keyring");
        let rk = RecoveryPrivateKey::generate().unwrap();
        let dev = FakeSnpDevice::new();
        let stored = sealer(&dev, &rk).protect(b"the KEK keyring").unwrap();
        assert_eq!(
            sealer(&dev, &rk)
                .unprotect(path, &stored)
                .unwrap()
                .as_slice(),
            b"the KEK keyring"
        );

        // Upgrade: a new image (new measurement, higher SVN and TCB) derives the same key.
        let mut upgraded = dev.clone();
        upgraded.measurement = [9; 48];
        upgraded.guest_svn = 2;
        upgraded.committed_tcb = 12;
        assert_eq!(
            sealer(&upgraded, &rk)
                .unprotect(path, &stored)
                .unwrap()
                .as_slice(),
            b"the KEK keyring"
        );

        // A debug VM (other policy), a different chip, older firmware: refused, typed.
        let mut debug = dev.clone();
        debug.policy |= 1 << 19;
        let mut moved = dev.clone();
        moved.chip_secret = [7; 32];
        let mut old_fw = dev.clone();
        old_fw.committed_tcb = 7;
        for d in [debug, moved.clone(), old_fw] {
            let e = sealer(&d, &rk).unprotect(path, &stored).unwrap_err();
            assert!(matches!(e, KeyError::Sealing { .. }), "{e}");
        }
        // The recovery key opens it anywhere; the new host seals it to itself again.
        let pt = TeeSealed::recover(path, &stored, &rk).unwrap();
        assert_eq!(pt.as_slice(), b"the KEK keyring");
        let resealed = sealer(&moved, &rk).protect(&pt).unwrap();
        assert!(sealer(&moved, &rk).unprotect(path, &resealed).is_ok());
        // A wrong recovery key, a tampered header, trailing bytes: refused.
        let other = RecoveryPrivateKey::generate().unwrap();
        assert!(TeeSealed::recover(path, &stored, &other).is_err());
        let mut t = stored.clone();
        t[10] ^= 1;
        assert!(sealer(&dev, &rk).unprotect(path, &t).is_err());
        assert!(TeeSealed::recover(path, &t, &rk).is_err());
        let mut t = stored.clone();
        t.push(0);
        assert!(matches!(
            sealer(&dev, &rk).unprotect(path, &t),
            Err(KeyError::Malformed { .. })
        ));
    }

    #[test]
    fn recovery_key_text_forms() {
        let rk = RecoveryPrivateKey::generate().unwrap();
        let pk = rk.public().unwrap();
        assert_eq!(pk.to_string().parse::<RecoveryPublicKey>().unwrap(), pk);
        let again = RecoveryPrivateKey::from_hex(&rk.to_hex()).unwrap();
        assert_eq!(again.public().unwrap(), pk);
        assert!(!format!("{rk:?}").contains(&rk.to_hex()[..8]));
        assert!("x25519:00".parse::<RecoveryPublicKey>().is_err());
    }

    #[test]
    fn the_real_device_fails_typed_off_snp() {
        if Path::new("/dev/sev-guest").exists() {
            return; // on an SNP guest this would really derive a key
        }
        let e = SevGuestDevice
            .derive_key(&KeyRequest::without_measurement(0, 0, 0))
            .unwrap_err();
        assert!(matches!(e, KeyError::Sealing { .. }), "{e}");
    }
}
