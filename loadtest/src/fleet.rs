//! `vakt-loadtest fleet`: writes a devices CSV (vakt's 9-column header,
//! [`registry::DEVICES_HEADER_V1`]) that `vakt devices import` accepts and `dc09 --accounts-file` / `storm --accounts-file` use.
//!
//! `round(N × aes_share)` devices, picked at random, get AES keys (alternately AES-128 and
//! AES-256, written as hex); the rest are plain. Plain devices are numbered from hex 1000,
//! AES-128 ones from 128000 and AES-256 ones from 256000, the same ranges as the generated
//! accounts of `dc09` (see [`crate::device`]). Keys are random unless `--test-keys`, which
//! gives every AES device the documented test key of its size, so that `dc09 --mode aes128`
//! without an accounts file matches. Each device has a subscriber id `S-000001`…, the
//! supervision interval, a telecom operator and an area from small lists. The same
//! `--seed` writes the same file. The tests check that vakt's own import parser accepts it.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::device::{
    BASE_AES128, BASE_AES256, BASE_PLAIN, MAX_GENERATED, TEST_KEY_128, TEST_KEY_256,
};
use crate::registry;

/// Telecom operators the devices are spread over.
const OPERATORS: [&str; 4] = ["Telia", "Tele2", "Telenor", "Tre"];
/// Areas the devices are spread over.
const AREAS: [&str; 6] = ["Centrum", "Norr", "Söder", "Öster", "Väster", "Landsbygd"];

/// Options of the `fleet` command.
#[derive(Debug, Clone)]
pub struct Options {
    /// Devices to write.
    pub devices: usize,
    /// Share (0..=1) with an AES key.
    pub aes_share: f64,
    /// Random seed.
    pub seed: u64,
    /// Give AES devices the documented test keys instead of random ones.
    pub test_keys: bool,
    /// `supervision_secs` of every device.
    pub supervision_secs: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Plain,
    Aes128,
    Aes256,
}

/// Writes the fleet to `out`.
///
/// # Errors
/// Bad options, or the file cannot be written.
pub fn run(o: &Options, out: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_GENERATED as usize).contains(&o.devices),
        "--devices must be 1..={MAX_GENERATED}"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&o.aes_share),
        "--aes-share must be 0..=1"
    );
    anyhow::ensure!(
        registry::SUPERVISION_SECS.contains(&o.supervision_secs),
        "--supervision-secs must be in {:?}",
        registry::SUPERVISION_SECS
    );
    let text = render(o);
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    f.write_all(text.as_bytes())?;
    f.flush()?;
    eprintln!("wrote {} devices to {}", o.devices, out.display());
    Ok(())
}

/// The CSV text of the fleet.
#[must_use]
pub fn render(o: &Options) -> String {
    let mut rng = StdRng::seed_from_u64(o.seed);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let n_aes = ((o.devices as f64 * o.aes_share).round() as usize).min(o.devices);
    let mut classes: Vec<Class> = (0..o.devices)
        .map(|i| match i {
            i if i >= n_aes => Class::Plain,
            i if i % 2 == 0 => Class::Aes128,
            _ => Class::Aes256,
        })
        .collect();
    classes.shuffle(&mut rng);
    let mut next = [BASE_PLAIN, BASE_AES128, BASE_AES256];
    let mut text = String::with_capacity(o.devices * 96 + 128);
    text.push_str(registry::DEVICES_HEADER_V1);
    text.push('\n');
    for (i, class) in classes.into_iter().enumerate() {
        let slot = match class {
            Class::Plain => 0,
            Class::Aes128 => 1,
            Class::Aes256 => 2,
        };
        let account = next.get(slot).copied().unwrap_or(BASE_PLAIN);
        if let Some(n) = next.get_mut(slot) {
            *n += 1;
        }
        let key = match (class, o.test_keys) {
            (Class::Plain, _) => String::new(),
            (Class::Aes128, true) => TEST_KEY_128.to_string(),
            (Class::Aes256, true) => TEST_KEY_256.to_string(),
            (Class::Aes128, false) => random_hex_key(&mut rng, 16),
            (Class::Aes256, false) => random_hex_key(&mut rng, 32),
        };
        let key_format = if key.is_empty() { "" } else { "hex" };
        let operator = OPERATORS[rng.random_range(0..OPERATORS.len())];
        let area = AREAS[rng.random_range(0..AREAS.len())];
        // account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area
        text.push_str(&format!(
            "{account:X},,,{key},{key_format},S-{:06},{},{operator},{area}\n",
            i + 1,
            o.supervision_secs
        ));
    }
    text
}

fn random_hex_key(rng: &mut StdRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02X}", rng.random::<u8>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(devices: usize, aes_share: f64, test_keys: bool) -> Options {
        Options {
            devices,
            aes_share,
            seed: 7,
            test_keys,
            supervision_secs: 90,
        }
    }

    #[test]
    fn fleet_imports_and_has_the_share() {
        let text = render(&opts(200, 0.3, false));
        let ds = vakt::registers::devices::parse_csv(text.as_bytes()).unwrap();
        assert_eq!(ds.len(), 200);
        let aes = ds.iter().filter(|d| d.key.is_some()).count();
        assert_eq!(aes, 60);
        assert_eq!(
            ds.iter()
                .filter(|d| d.key.as_ref().is_some_and(|k| k.bits() == 256))
                .count(),
            30
        );
        let accounts: std::collections::HashSet<_> = ds.iter().map(|d| d.account.clone()).collect();
        assert_eq!(accounts.len(), 200);
        assert_eq!(render(&opts(200, 0.3, false)), text, "same seed, same file");
    }

    #[test]
    fn test_keys_match_the_generated_accounts() {
        let text = render(&opts(40, 0.5, true));
        let ds = vakt::registers::devices::parse_csv(text.as_bytes()).unwrap();
        let reg = vakt::registers::devices::Registry::new(ds);
        for mode in [
            crate::device::Mode::Plain,
            crate::device::Mode::Aes128,
            crate::device::Mode::Aes256,
        ] {
            for id in crate::device::identities(10, Some(mode), None).unwrap() {
                let d = reg
                    .lookup(&id.account, Some("0"), None)
                    .expect("generated account in fleet");
                assert_eq!(d.key, id.key, "{mode:?} {}", id.account);
            }
        }
    }
}
