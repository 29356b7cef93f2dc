//! The legs' crypto: a str0m `CryptoProvider` made of RustCrypto primitives, dimpl's DTLS
//! with its RustCrypto provider, and DTLS certificates from `rcgen` on `ring`.
//!
//! Why not str0m's `rust-crypto` feature (`str0m-rust-crypto` 0.6) as is: it turns on dimpl's
//! `rcgen` feature for its self-signed certificate, and in dimpl 0.7 that feature pulls
//! `aws-lc-rs` (a C build of AWS-LC). With `aws-lc-rs` compiled in, dimpl's
//! `Config::build` prefers it to RustCrypto, so the DTLS handshake would run on AWS-LC
//! despite the name, and the workspace's `rcgen` (vakt's TLS and QUIC development
//! certificates) would switch from `ring` to AWS-LC too (rcgen picks `aws_lc_rs` when both
//! are on). This module is the same composition without that: the primitives below are
//! RustCrypto's (`aes` through `aes-gcm`, `ctr`, `hmac`, `sha1`, `sha2`, the family DC-09
//! already uses), dimpl gets RustCrypto explicitly (`with_crypto_provider`), and the
//! certificate comes from `rcgen` on `ring`, vakt's TLS provider. The protocol logic (SRTP
//! IVs, tags and their constant-time checks, key derivation) stays str0m's; here are only
//! the primitives it calls, tested against RFC 3711 (B.3), RFC 7714 and RFC 2202 vectors.

use std::sync::Arc;
use std::time::Instant;

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::cipher::BlockEncrypt;
use aes_gcm::aes::{Aes128, Aes256};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::Digest;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80Cipher, CryptoError, CryptoProvider,
    Sha1HmacProvider, Sha256Provider, SrtpProvider, SupportedAeadAes128Gcm, SupportedAeadAes256Gcm,
    SupportedAes128CmSha1_80,
};

/// AES-128 in counter mode with a 128-bit big-endian counter (SRTP's AES-CM, RFC 3711).
type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// The provider every leg uses.
pub(super) fn provider() -> CryptoProvider {
    static SRTP: Srtp = Srtp;
    static SHA1_HMAC: Sha1Hmac = Sha1Hmac;
    static SHA256: Sha256 = Sha256;
    static DTLS: Dtls = Dtls;
    CryptoProvider {
        srtp_provider: &SRTP,
        sha1_hmac_provider: &SHA1_HMAC,
        sha256_provider: &SHA256,
        dtls_provider: &DTLS,
    }
}

/// A self-signed ECDSA P-256 certificate for DTLS (browsers check only its fingerprint,
/// which the answer carries). The serial is random: Firefox refuses two certificates of one
/// issuer with the same serial.
pub(super) fn certificate() -> Option<DtlsCert> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).ok()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::OrganizationName, "vakt");
    name.push(rcgen::DnType::CommonName, "vakt voice");
    params.distinguished_name = name;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7F; // a positive INTEGER
    params.serial_number = Some(serial.to_vec().into());
    let cert = params.self_signed(&key).ok()?;
    Some(DtlsCert {
        certificate: cert.der().to_vec(),
        private_key: key.serialize_der(),
    })
}

// ---- SRTP ----

#[derive(Debug)]
struct Srtp;

impl SrtpProvider for Srtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        &CmFactory
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        &Gcm128Factory
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        &Gcm256Factory
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        ecb_round::<Aes128>(key, input, output);
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        ecb_round::<Aes256>(key, input, output);
    }
}

/// One AES block of SRTP's key derivation: `output[..16]` = AES(key, input), and
/// `output[16..32]` = AES(key, 16 × 0x10), the PKCS#7 padding block other providers return
/// too (str0m uses only the first 16 bytes). Wrong lengths (never from str0m) leave
/// `output` as it is.
fn ecb_round<C: KeyInit + BlockEncrypt>(key: &[u8], input: &[u8], output: &mut [u8]) {
    let (Ok(cipher), Some(input), Some(out)) = (
        C::new_from_slice(key),
        input.get(..16),
        output.get_mut(..32),
    ) else {
        return;
    };
    let mut block = GenericArray::clone_from_slice(input);
    cipher.encrypt_block(&mut block);
    out[..16].copy_from_slice(&block);
    let mut pad = GenericArray::clone_from_slice(&[0x10; 16]);
    cipher.encrypt_block(&mut pad);
    out[16..].copy_from_slice(&pad);
}

#[derive(Debug)]
struct CmFactory;

impl SupportedAes128CmSha1_80 for CmFactory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn Aes128CmSha1_80Cipher> {
        Box::new(Cm { key })
    }
}

/// AES-128-CM: the keystream from `iv` XORed onto the input (the same both ways).
struct Cm {
    key: [u8; 16],
}

impl std::fmt::Debug for Cm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cm")
    }
}

impl Aes128CmSha1_80Cipher for Cm {
    fn encrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let out = output
            .get_mut(..input.len())
            .ok_or_else(|| CryptoError::Other("SRTP output shorter than input".into()))?;
        out.copy_from_slice(input);
        let mut cipher = Aes128Ctr::new(&self.key.into(), iv.into());
        cipher.apply_keystream(out);
        Ok(())
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.encrypt(iv, input, output)
    }
}

#[derive(Debug)]
struct Gcm128Factory;

impl SupportedAeadAes128Gcm for Gcm128Factory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        Box::new(Gcm(Aes128Gcm::new(&key.into())))
    }
}

#[derive(Debug)]
struct Gcm256Factory;

impl SupportedAeadAes256Gcm for Gcm256Factory {
    fn create_cipher(&self, key: [u8; 32], _encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        Box::new(Gcm(Aes256Gcm::new(&key.into())))
    }
}

/// AES-GCM for SRTP (RFC 7714): ciphertext and the 16-byte tag out; the tag checked in.
struct Gcm<C>(C);

impl<C> std::fmt::Debug for Gcm<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gcm")
    }
}

impl<C: Aead> Gcm<C> {
    fn seal(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(iv), Payload { msg: input, aad })
            .map_err(|_| CryptoError::Other("AES-GCM encryption failed".into()))?;
        output
            .get_mut(..sealed.len())
            .ok_or_else(|| CryptoError::Other("SRTP output shorter than the sealed input".into()))?
            .copy_from_slice(&sealed);
        Ok(())
    }

    fn open(
        &self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let joined;
        let aad: &[u8] = match aads {
            [one] => one,
            _ => {
                joined = aads.concat();
                &joined
            }
        };
        let opened = self
            .0
            .decrypt(Nonce::from_slice(iv), Payload { msg: input, aad })
            .map_err(|_| CryptoError::Other("AES-GCM authentication failed".into()))?;
        output
            .get_mut(..opened.len())
            .ok_or_else(|| CryptoError::Other("SRTP output shorter than the plaintext".into()))?
            .copy_from_slice(&opened);
        Ok(opened.len())
    }
}

impl AeadAes128GcmCipher for Gcm<Aes128Gcm> {
    fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.seal(iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.open(iv, aads, input, output)
    }
}

impl AeadAes256GcmCipher for Gcm<Aes256Gcm> {
    fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.seal(iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.open(iv, aads, input, output)
    }
}

// ---- STUN's HMAC-SHA1, the fingerprints' SHA-256 ----

#[derive(Debug)]
struct Sha1Hmac;

impl Sha1HmacProvider for Sha1Hmac {
    fn sha1_hmac(&self, key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let Ok(mut mac) = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key) else {
            return [0; 20];
        };
        for p in payloads {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

#[derive(Debug)]
struct Sha256;

impl Sha256Provider for Sha256 {
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }
}

// ---- DTLS ----

#[derive(Debug)]
struct Dtls;

impl DtlsProvider for Dtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        // ICE has proven the peer's address before DTLS starts: no server cookie needed.
        let mut builder = dimpl::Config::builder()
            .with_crypto_provider(dimpl::crypto::rust_crypto::default_provider())
            .use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("DTLS config: {e}")))?,
        );
        let cert = cert.clone();
        let dtls = match version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "unsupported DTLS version {other}"
                )));
            }
        };
        Ok(Box::new(DtlsSession(dtls)))
    }
}

/// A DTLS session: dimpl's, as str0m drives it.
struct DtlsSession(dimpl::Dtls);

impl std::fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DtlsSession")
    }
}

impl DtlsInstance for DtlsSession {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    // RFC 3711 B.3: the master key and salt of the key derivation vectors.
    const MASTER: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
    const SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";

    /// The key derivation's first input block for `label` (RFC 3711 §4.3.1: the salt XOR the
    /// label at byte 7, with a zero counter).
    fn kdf_block(label: u8) -> [u8; 16] {
        let mut block = [0; 16];
        block[..14].copy_from_slice(&hex(SALT));
        block[7] ^= label;
        block
    }

    #[test]
    fn the_ecb_round_derives_rfc_3711_s_session_key() {
        let mut out = [0; 32];
        Srtp.srtp_aes_128_ecb_round(&hex(MASTER), &kdf_block(0), &mut out);
        assert_eq!(out[..16], hex("C61E7A93744F39EE10734AFE3FF7A087")[..]);
        // The second half is the encrypted padding block; any change to it shows here.
        let mut pad = [0; 32];
        Srtp.srtp_aes_128_ecb_round(&hex(MASTER), &[0x10; 16], &mut pad);
        assert_eq!(out[16..], pad[..16]);
    }

    #[test]
    fn the_counter_mode_keystream_is_rfc_3711_s() {
        // The key derivation is AES-CM's keystream: the 20-byte authentication key (label 1)
        // and the 14-byte salt (label 2) of RFC 3711 B.3, over two counter blocks.
        let master: [u8; 16] = hex(MASTER).try_into().unwrap();
        let mut cipher = CmFactory.create_cipher(master, true);
        let mut auth = [0; 20];
        cipher.encrypt(&kdf_block(1), &[0; 20], &mut auth).unwrap();
        assert_eq!(
            auth[..],
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")[..]
        );
        let mut salt = [0; 14];
        cipher.encrypt(&kdf_block(2), &[0; 14], &mut salt).unwrap();
        assert_eq!(salt[..], hex("30CBBC08863D8C85D49DB34A9AE1")[..]);
        // And back: the same keystream undoes it.
        let mut plain = [0; 14];
        cipher.decrypt(&kdf_block(2), &salt, &mut plain).unwrap();
        let mut twice = [0; 14];
        cipher.encrypt(&kdf_block(2), &salt, &mut twice).unwrap();
        assert_eq!(plain, twice);
        assert!(
            cipher
                .encrypt(&kdf_block(2), &[0; 14], &mut [0; 13])
                .is_err()
        );
    }

    /// RFC 7714 §16.1.1: an RTP packet protected with AEAD_AES_128_GCM.
    const GCM_KEY: &str = "000102030405060708090a0b0c0d0e0f";
    const GCM_SALT: &str = "517569642070726f2071756f";
    const RTP: &str = "8040f17b8041f8d35501a0b2 47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";

    #[test]
    fn gcm_protects_rfc_7714_s_packet() {
        let packet = hex(RTP);
        // RFC 7714 §8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt; the header is the AAD.
        let (header, payload) = packet.split_at(12);
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&header[8..12]);
        iv[10..12].copy_from_slice(&header[2..4]);
        for (b, s) in iv.iter_mut().zip(hex(GCM_SALT)) {
            *b ^= s;
        }
        let key: [u8; 16] = hex(GCM_KEY).try_into().unwrap();
        let mut cipher = Gcm128Factory.create_cipher(key, true);
        let mut sealed = vec![0; payload.len() + 16];
        cipher.encrypt(&iv, header, payload, &mut sealed).unwrap();
        assert_eq!(
            sealed,
            hex(
                "f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce"
            )
        );
        let mut opened = vec![0; sealed.len()];
        let n = cipher
            .decrypt(&iv, &[&header[..4], &header[4..]], &sealed, &mut opened)
            .unwrap();
        assert_eq!(&opened[..n], payload);
        // A changed bit anywhere fails the tag.
        let mut forged = sealed.clone();
        forged[3] ^= 1;
        assert!(
            cipher
                .decrypt(&iv, &[header], &forged, &mut opened)
                .is_err()
        );
        let mut other_aad = header.to_vec();
        other_aad[1] ^= 0x80;
        assert!(
            cipher
                .decrypt(&iv, &[&other_aad], &sealed, &mut opened)
                .is_err()
        );
    }

    #[test]
    fn gcm_256_round_trips_and_checks_its_tag() {
        let mut cipher = Gcm256Factory.create_cipher([7; 32], true);
        let iv = [9; 12];
        let mut sealed = [0; 40];
        cipher
            .encrypt(
                &iv,
                b"header-aad-12",
                b"a frame of G.711 ",
                &mut sealed[..33],
            )
            .unwrap();
        let mut opened = [0; 40];
        let n = cipher
            .decrypt(&iv, &[b"header-aad-12"], &sealed[..33], &mut opened)
            .unwrap();
        assert_eq!(&opened[..n], b"a frame of G.711 ");
        sealed[32] ^= 1;
        assert!(
            cipher
                .decrypt(&iv, &[b"header-aad-12"], &sealed[..33], &mut opened)
                .is_err()
        );
    }

    #[test]
    fn hmac_sha1_and_sha256_are_the_standard_ones() {
        // RFC 2202 test cases 1 and 2; payloads in pieces as STUN passes them.
        assert_eq!(
            Sha1Hmac.sha1_hmac(&[0x0b; 20], &[b"Hi ", b"There"])[..],
            hex("b617318655057264e28bc0b6fb378c8ef146be00")[..]
        );
        assert_eq!(
            Sha1Hmac.sha1_hmac(b"Jefe", &[b"what do ya want for nothing?"])[..],
            hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")[..]
        );
        assert_eq!(
            Sha256.sha256(b"abc")[..],
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")[..]
        );
    }

    #[test]
    fn each_certificate_is_new_and_usable_by_dimpl() {
        let a = certificate().unwrap();
        let b = certificate().unwrap();
        assert_ne!(a.certificate, b.certificate);
        assert_ne!(a.private_key, b.private_key);
        // dimpl takes the key (an ECDSA P-256 PKCS#8 document) for a session.
        let dtls = Dtls
            .new_dtls(&a, Instant::now(), DtlsVersion::Dtls12, None)
            .unwrap();
        assert!(!dtls.is_closed());
    }
}
