//! vakt's register CSVs as the load generator writes and reads them: the devices file
//! (`fleet`, `console-setup`, `--accounts-file`) and the subscribers file (`console-setup`).
//!
//! The load generator builds on the codec crate (`vakt-proto`), not on the server, so it keeps
//! the headers itself and reads only the columns a simulated device needs: account, line,
//! receiver, key and key format. It checks those (the header is one of vakt's, the row has its
//! cells, the key is an AES key in its format) and nothing else: vakt's import checks every
//! column. The tests hold the two together: the headers and limits here are vakt's, every
//! file this tool writes imports with vakt's own parser, and this reader finds the same
//! devices in a file as vakt does.

use std::io::Read;
use std::ops::RangeInclusive;

use anyhow::Context as _;
use vakt_proto::crypto::Key;

/// vakt's devices header, with the SIP credentials of SCAIP devices and the unit's own
/// phone number (`vakt::registers::devices::CSV_HEADER`).
pub const DEVICES_HEADER: &str = "account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area,device_type,sip_user,sip_password,phone";

/// vakt's devices header before the unit's phone number (`CSV_HEADER_V3`).
pub const DEVICES_HEADER_V3: &str = "account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area,device_type,sip_user,sip_password";

/// vakt's devices header before the SIP credentials (`CSV_HEADER_V2`); `console-setup`
/// writes it.
pub const DEVICES_HEADER_V2: &str = "account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area,device_type";

/// vakt's devices header before `device_type` (`CSV_HEADER_V1`); `fleet` writes it.
pub const DEVICES_HEADER_V1: &str =
    "account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area";

/// vakt's subscribers header (`vakt::registers::subscribers::CSV_HEADER`).
pub const SUBSCRIBERS_HEADER: &str = "id,name,personal_number,address,postcode,city,area,phone,care_provider,keys,key_location,digital_lock_id,door_code,entry_notes,health_notes,care_plan_notes,contact1_name,contact1_relation,contact1_phone,contact2_name,contact2_relation,contact2_phone,contact3_name,contact3_relation,contact3_phone,language,needs_extra_visits,health_to_patrol,municipality";

/// The supervision intervals vakt accepts (`vakt::registers::devices::SUPERVISION_SECS`).
pub const SUPERVISION_SECS: RangeInclusive<u32> = 20..=90_000;

/// A row of a devices file: what a simulated device needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// Account, upper case.
    pub account: String,
    /// Line, upper case, if the row gives one.
    pub line: Option<String>,
    /// Receiver, upper case, if the row gives one.
    pub receiver: Option<String>,
    /// AES key, if the row gives one.
    pub key: Option<Key>,
}

/// Reads a devices file (any of vakt's devices headers, a byte-order mark allowed; cells
/// trimmed, blank rows skipped), in the file's order.
///
/// # Errors
/// Another header, a row with another number of cells than its header, an empty account, a
/// key that is not an AES key in its `key_format` (hex or ascii; the key is never shown), a
/// cell that is not UTF-8, or a file without rows. Each row's error names its line.
pub fn read_devices(input: impl Read) -> anyhow::Result<Vec<DeviceRow>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header = rdr
        .headers()
        .context("line 1: the header is not UTF-8 CSV")?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    let header = header.trim_start_matches('\u{feff}');
    let Some(columns) = [
        DEVICES_HEADER,
        DEVICES_HEADER_V3,
        DEVICES_HEADER_V2,
        DEVICES_HEADER_V1,
    ]
    .into_iter()
    .find(|h| *h == header)
    .map(|h| h.split(',').count()) else {
        anyhow::bail!("line 1: the header must be vakt's `{DEVICES_HEADER}` or an older one");
    };
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.context("not UTF-8 CSV")?;
        let line = rec.position().map_or(0, csv::Position::line);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        rows.push(device_row(&rec, columns).with_context(|| format!("line {line}"))?);
    }
    anyhow::ensure!(!rows.is_empty(), "the file has no devices");
    Ok(rows)
}

fn device_row(rec: &csv::StringRecord, columns: usize) -> anyhow::Result<DeviceRow> {
    anyhow::ensure!(
        rec.len() == columns,
        "expected {columns} cells, found {}",
        rec.len()
    );
    let cell = |i: usize| rec.get(i).unwrap_or("");
    let upper = |i: usize| Some(cell(i).to_ascii_uppercase()).filter(|c| !c.is_empty());
    let account = upper(0).context("account is empty")?;
    let key = match (cell(3), cell(4).to_ascii_lowercase().as_str()) {
        ("", "") => None,
        ("", _) => anyhow::bail!("key_format is set but key is empty"),
        (k, "hex") => Some(Key::from_hex(k).map_err(|_| {
            anyhow::anyhow!(
                "key is not 32, 48 or 64 hex digits (found {} characters)",
                k.len()
            )
        })?),
        (k, "ascii") => Some(Key::from_ascii(k).map_err(|_| {
            anyhow::anyhow!(
                "key is not 16, 24 or 32 ASCII characters (found {})",
                k.chars().count()
            )
        })?),
        (_, _) => anyhow::bail!("key_format must say hex or ascii"),
    };
    Ok(DeviceRow {
        account,
        line: upper(1),
        receiver: upper(2),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_limits_are_vakts() {
        use vakt::registers::{devices, subscribers};
        assert_eq!(DEVICES_HEADER, devices::CSV_HEADER);
        assert_eq!(DEVICES_HEADER_V3, devices::CSV_HEADER_V3);
        assert_eq!(DEVICES_HEADER_V2, devices::CSV_HEADER_V2);
        assert_eq!(DEVICES_HEADER_V1, devices::CSV_HEADER_V1);
        assert_eq!(SUBSCRIBERS_HEADER, subscribers::CSV_HEADER);
        assert_eq!(SUPERVISION_SECS, devices::SUPERVISION_SECS);
    }

    /// What vakt's import makes of `text`, in the columns this reader reads.
    fn as_vakt_reads(text: &str) -> Vec<DeviceRow> {
        vakt::registers::devices::parse_csv(text.as_bytes())
            .expect("vakt imports it")
            .into_iter()
            .map(|d| DeviceRow {
                account: d.account,
                line: d.line,
                receiver: d.receiver,
                key: d.key,
            })
            .collect()
    }

    #[test]
    fn finds_the_devices_vakt_finds() {
        let files = [
            crate::fleet::render(&crate::fleet::Options {
                devices: 300,
                aes_share: 0.4,
                seed: 11,
                test_keys: false,
                supervision_secs: 90,
            }),
            format!(
                "\u{feff}{DEVICES_HEADER}\n\
                 12ab,a1,c,000102030405060708090a0b0c0d0e0f,HEX,S-1,,,,pendant,,,\n\
                 , , , , , , , , , , , ,\n \
                 3456 , , 7 ,ABCDEFGHIJKLMNOP,ascii,,,,,,,,\n\
                 678,,,,,S-3,,,,,luc678,s3cret,+46701234567\n"
            ),
            format!("{DEVICES_HEADER_V3}\n678,,,,,S-3,,,,,luc678,s3cret\n"),
            format!("{DEVICES_HEADER_V2}\n1234,,,,,S-1,90,Telia,Norr,carephone\n"),
        ];
        for text in &files {
            let ours = read_devices(text.as_bytes()).expect("reads");
            assert_eq!(ours, as_vakt_reads(text), "{text}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_use_without_showing_the_key() {
        let err = |text: &str| format!("{:#}", read_devices(text.as_bytes()).unwrap_err());
        let e = err("account,key\n1,2\n");
        assert!(e.starts_with("line 1: the header must be"), "{e}");
        let e = err(&format!(
            "{DEVICES_HEADER_V1}\n1234,,,,,,,,\n5678,,,0011AA,hex,,,,\n"
        ));
        assert!(
            e.starts_with("line 3: key is not 32, 48 or 64 hex digits"),
            "{e}"
        );
        assert!(!e.contains("0011AA"), "{e}");
        let e = err(&format!("{DEVICES_HEADER_V1}\n1234,,,,\n"));
        assert!(e.contains("line 2: expected 9 cells, found 5"), "{e}");
        let e = err(&format!("{DEVICES_HEADER_V1}\n1234,,,00,,,,,\n"));
        assert!(e.contains("key_format must say hex or ascii"), "{e}");
        let e = err(&format!("{DEVICES_HEADER_V1}\n,,,,,\n"));
        assert!(e.contains("the file has no devices"), "{e}");
    }
}
