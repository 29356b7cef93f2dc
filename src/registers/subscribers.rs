//! The subscriber register's CSV import and the checks every subscriber passes.
//!
//! Like the device registry ([`crate::registers::devices`]), an import is all or nothing (the
//! registers' one loader, [`crate::registers::csv`]): every row is checked first, and a file with any bad row imports nothing, with one message per bad row
//! (by line number). Messages never show a door code, a personal number or health text.

use std::io::Read;

use crate::model::{Access, Contact, Subscriber};
use crate::registers::csv::{Header, ImportFile, read_all_or_nothing};
use crate::registers::problem::FieldProblem;

/// The CSV header `vakt subscribers import` expects (one line, in this order).
pub const CSV_HEADER: &str = "id,name,personal_number,address,postcode,city,area,phone,care_provider,keys,key_location,digital_lock_id,door_code,entry_notes,health_notes,care_plan_notes,contact1_name,contact1_relation,contact1_phone,contact2_name,contact2_relation,contact2_phone,contact3_name,contact3_relation,contact3_phone,language,needs_extra_visits,health_to_patrol,municipality";

/// The header of files written before `municipality` (still read: the card then belongs to
/// the centre's municipality).
const CSV_HEADER_V3: &str = "id,name,personal_number,address,postcode,city,area,phone,care_provider,keys,key_location,digital_lock_id,door_code,entry_notes,health_notes,care_plan_notes,contact1_name,contact1_relation,contact1_phone,contact2_name,contact2_relation,contact2_phone,contact3_name,contact3_relation,contact3_phone,language,needs_extra_visits,health_to_patrol";

/// The header of files written before `health_to_patrol` (still read: the column is then
/// `false`, no consent, for everyone).
const CSV_HEADER_V2: &str = "id,name,personal_number,address,postcode,city,area,phone,care_provider,keys,key_location,digital_lock_id,door_code,entry_notes,health_notes,care_plan_notes,contact1_name,contact1_relation,contact1_phone,contact2_name,contact2_relation,contact2_phone,contact3_name,contact3_relation,contact3_phone,language,needs_extra_visits";

/// The header of files written before `needs_extra_visits` (still read: the column is then
/// `false` for everyone).
const CSV_HEADER_V1: &str = "id,name,personal_number,address,postcode,city,area,phone,care_provider,keys,key_location,digital_lock_id,door_code,entry_notes,health_notes,care_plan_notes,contact1_name,contact1_relation,contact1_phone,contact2_name,contact2_relation,contact2_phone,contact3_name,contact3_relation,contact3_phone,language";

/// Number of columns in [`CSV_HEADER`].
#[cfg(test)]
const COLUMNS: usize = 29;

/// Contacts a CSV row holds.
const CSV_CONTACTS: usize = 3;

/// Most contacts a subscriber may have.
pub const MAX_CONTACTS: usize = 10;

/// Longest short text (name, address, key location, relation, ...), in characters.
pub const MAX_SHORT_CHARS: usize = 200;

/// Longest note (entry, health, care plan), in characters.
pub const MAX_NOTE_CHARS: usize = 4000;

/// The language when none is given.
pub const DEFAULT_LANGUAGE: &str = "sv";

/// The subscriber register's one file (the CSV of `vakt subscribers import`), as import
/// messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscribersCsv;

impl ImportFile for SubscribersCsv {
    const ROWS: &'static str = "subscribers";
    const SEVERAL: bool = false;
    fn name(self) -> &'static str {
        "subscribers"
    }
}

/// What is wrong with a subscribers file.
pub type ImportError = crate::registers::csv::ImportError<SubscribersCsv>;

/// The headers a subscribers file may have, the current one first. A row under the current
/// header may leave out its last three cells (an older row without them means "no", and the
/// centre's municipality).
const HEADERS: [Header; 4] = [
    Header::new(CSV_HEADER).optional_tail(3),
    Header::new(CSV_HEADER_V3).optional_tail(2),
    Header::new(CSV_HEADER_V2).optional_tail(1),
    Header::new(CSV_HEADER_V1),
];

/// Whether `id` is 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A value as shown in a message: quoted, or only its length when it is long.
pub(crate) fn shown(v: &str) -> String {
    let n = v.chars().count();
    if n <= 40 {
        format!("{v:?}")
    } else {
        format!("of {n} characters")
    }
}

/// A phone number: digits, spaces, `+` and `-`, at least 3 digits, at most 32 characters.
pub(crate) fn valid_phone(p: &str) -> bool {
    p.chars().count() <= 32
        && p.chars().filter(char::is_ascii_digit).count() >= 3
        && p.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-'))
}

/// Swedish `YYYYMMDD-NNNN`, `YYMMDD-NNNN`, `YYMMDD+NNNN`, Norwegian 11 digits and the like:
/// 10 to 13 characters of digits, `-` and `+`, at least 10 of them digits.
fn valid_personal_number(p: &str) -> bool {
    (10..=13).contains(&p.len())
        && p.bytes().filter(u8::is_ascii_digit).count() >= 10
        && p.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+'))
}

/// A language code such as `sv`, `fi`, `nb`, `se` or `zh-Hant`.
fn valid_language(l: &str) -> bool {
    (2..=16).contains(&l.len())
        && l.bytes().take(2).all(|b| b.is_ascii_alphabetic())
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Tidies a subscriber before [`validate`]: trims every text, drops contacts with nothing
/// in them, and sets the language to [`DEFAULT_LANGUAGE`] when none is given.
pub fn normalize(s: &mut Subscriber) {
    let trim = |t: &mut String| {
        let v = t.trim();
        if v.len() != t.len() {
            *t = v.to_string();
        }
    };
    for t in [
        &mut s.id,
        &mut s.name,
        &mut s.personal_number,
        &mut s.address,
        &mut s.postcode,
        &mut s.city,
        &mut s.area,
        &mut s.phone,
        &mut s.care_provider,
        &mut s.access.key_location,
        &mut s.access.digital_lock_id,
        &mut s.access.door_code,
        &mut s.access.entry_notes,
        &mut s.health_notes,
        &mut s.care_plan_notes,
        &mut s.language,
        &mut s.municipality,
    ] {
        trim(t);
    }
    for c in &mut s.contacts {
        trim(&mut c.name);
        trim(&mut c.relation);
        trim(&mut c.phone);
    }
    s.contacts
        .retain(|c| !(c.name.is_empty() && c.relation.is_empty() && c.phone.is_empty()));
    if s.language.is_empty() {
        s.language = DEFAULT_LANGUAGE.to_string();
    }
}

/// Checks a subscriber (as imported, or as sent by `PUT /api/subscribers/{id}`). Returns
/// every problem, separated by `; ` (see [`problems`]).
pub fn validate(s: &Subscriber) -> Result<(), String> {
    let errs = problems(s);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// Every problem of a subscriber, one each, each naming its field first (`name is empty`,
/// `contact2 has no name` ...). Door codes, personal numbers and notes are never quoted in a
/// message.
pub fn problems(s: &Subscriber) -> Vec<FieldProblem> {
    let mut errs = Vec::new();
    if !valid_id(&s.id) {
        errs.push(
            FieldProblem::new(
                "id",
                "subscriber.id",
                format!(
                    "id {} must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' or '-'",
                    shown(&s.id)
                ),
            )
            .param("value", shown(&s.id)),
        );
    }
    if s.name.trim().is_empty() {
        errs.push(FieldProblem::new(
            "name",
            "subscriber.name_empty",
            "name is empty",
        ));
    }
    if s.personal_number.is_empty() {
        errs.push(FieldProblem::new(
            "personal_number",
            "subscriber.personal_number_empty",
            "personal_number is empty",
        ));
    } else if !valid_personal_number(&s.personal_number) {
        let len = s.personal_number.chars().count();
        errs.push(
            FieldProblem::new(
                "personal_number",
                "subscriber.personal_number",
                format!(
                    "personal_number must be 10 to 13 characters of digits, '-' or '+' (such as \
                     YYYYMMDD-NNNN or 11 digits); the one given has {len} characters"
                ),
            )
            .param("len", len),
        );
    }
    if !s.phone.is_empty() && !valid_phone(&s.phone) {
        errs.push(
            FieldProblem::new(
                "phone",
                "subscriber.phone",
                format!(
                    "phone {} must be digits, spaces, '+' and '-' (at most 32)",
                    shown(&s.phone)
                ),
            )
            .param("value", shown(&s.phone)),
        );
    }
    let short = [
        ("name", &s.name),
        ("address", &s.address),
        ("postcode", &s.postcode),
        ("city", &s.city),
        ("area", &s.area),
        ("care_provider", &s.care_provider),
        ("municipality", &s.municipality),
        ("key_location", &s.access.key_location),
        ("digital_lock_id", &s.access.digital_lock_id),
        ("door_code", &s.access.door_code),
    ];
    let notes = [
        ("entry_notes", &s.access.entry_notes),
        ("health_notes", &s.health_notes),
        ("care_plan_notes", &s.care_plan_notes),
    ];
    let limits = short
        .iter()
        .map(|(f, v)| (*f, *v, MAX_SHORT_CHARS))
        .chain(notes.iter().map(|(f, v)| (*f, *v, MAX_NOTE_CHARS)));
    for (field, v, max) in limits {
        if v.chars().count() > max {
            errs.push(
                FieldProblem::new(
                    field,
                    "subscriber.too_long",
                    format!("{field} is longer than {max} characters"),
                )
                .param("field", field)
                .param("max", max),
            );
        }
    }
    if s.contacts.len() > MAX_CONTACTS {
        errs.push(
            FieldProblem::new(
                "contacts",
                "subscriber.contacts_too_many",
                format!(
                    "contacts: {} given, at most {MAX_CONTACTS}",
                    s.contacts.len()
                ),
            )
            .param("given", s.contacts.len())
            .param("max", MAX_CONTACTS),
        );
    }
    for (i, c) in s.contacts.iter().enumerate() {
        let n = i + 1;
        if c.name.trim().is_empty() {
            errs.push(
                FieldProblem::new(
                    format!("contact{n}_name"),
                    "subscriber.contact_no_name",
                    format!("contact{n} has no name"),
                )
                .param("n", n),
            );
        } else if c.phone.is_empty() {
            errs.push(
                FieldProblem::new(
                    format!("contact{n}_phone"),
                    "subscriber.contact_no_phone",
                    format!("contact{n} ({}) has no phone", shown(&c.name)),
                )
                .param("n", n)
                .param("name", shown(&c.name)),
            );
        }
        if !c.phone.is_empty() && !valid_phone(&c.phone) {
            errs.push(
                FieldProblem::new(
                    format!("contact{n}_phone"),
                    "subscriber.contact_phone",
                    format!(
                        "contact{n}_phone {} must be digits, spaces, '+' and '-' (at most 32)",
                        shown(&c.phone)
                    ),
                )
                .param("n", n)
                .param("value", shown(&c.phone)),
            );
        }
        if c.name.chars().count() > MAX_SHORT_CHARS || c.relation.chars().count() > MAX_SHORT_CHARS
        {
            errs.push(
                FieldProblem::new(
                    format!("contact{n}_name"),
                    "subscriber.contact_too_long",
                    format!(
                        "contact{n}'s name or relation is longer than {MAX_SHORT_CHARS} characters"
                    ),
                )
                .param("n", n)
                .param("max", MAX_SHORT_CHARS),
            );
        }
    }
    if !valid_language(&s.language) {
        errs.push(
            FieldProblem::new(
                "language",
                "subscriber.language",
                format!(
                    "language {} must be a language code such as sv, fi or nb",
                    shown(&s.language)
                ),
            )
            .param("value", shown(&s.language)),
        );
    }
    errs
}

/// Parses and checks a subscribers CSV (UTF-8, header [`CSV_HEADER`], a byte-order mark
/// allowed; see [`crate::registers::csv`]). Either every row is valid and all subscribers are
/// returned, or nothing is, with one message per bad row (by line number). Rows with every
/// cell empty are skipped; an empty `language` means [`DEFAULT_LANGUAGE`]; an empty `keys`
/// means 0.
pub fn parse_csv(input: impl Read) -> Result<Vec<Subscriber>, ImportError> {
    read_all_or_nothing(
        input,
        SubscribersCsv,
        &HEADERS,
        |rec, _| parse_row(rec),
        |s| format!("id {}", s.id),
    )
}

/// One row, its cells counted already (an older row has no `needs_extra_visits` or
/// `health_to_patrol`).
fn parse_row(rec: &csv::StringRecord) -> Result<Subscriber, String> {
    let cell = |i: usize| rec.get(i).unwrap_or("").to_string();
    // The cell is not shown: with a column out of place it could be the door code.
    let keys = match rec.get(9).unwrap_or("") {
        "" => 0,
        k => k
            .parse::<u32>()
            .map_err(|_| "keys must be a whole number (or empty for 0)".to_string())?,
    };
    let contacts = (0..CSV_CONTACTS)
        .map(|i| Contact {
            name: cell(16 + 3 * i),
            relation: cell(17 + 3 * i),
            phone: cell(18 + 3 * i),
        })
        .collect();
    let mut s = Subscriber {
        id: cell(0),
        name: cell(1),
        personal_number: cell(2),
        address: cell(3),
        postcode: cell(4),
        city: cell(5),
        area: cell(6),
        phone: cell(7),
        care_provider: cell(8),
        access: Access {
            keys,
            key_location: cell(10),
            digital_lock_id: cell(11),
            door_code: cell(12),
            entry_notes: cell(13),
        },
        health_notes: cell(14),
        care_plan_notes: cell(15),
        contacts,
        language: cell(25),
        needs_extra_visits: match rec.get(26).unwrap_or("").to_lowercase().as_str() {
            "" | "0" | "no" | "false" | "nej" => false,
            "1" | "yes" | "true" | "ja" => true,
            _ => return Err("needs_extra_visits must be yes or no (or empty for no)".into()),
        },
        health_to_patrol: match rec.get(27).unwrap_or("").to_lowercase().as_str() {
            "" | "0" | "no" | "false" | "nej" => false,
            "1" | "yes" | "true" | "ja" => true,
            _ => return Err("health_to_patrol must be yes or no (or empty for no)".into()),
        },
        municipality: cell(28),
    };
    normalize(&mut s);
    validate(&s)?;
    Ok(s)
}

/// Writes subscribers as CSV with [`CSV_HEADER`] (what [`parse_csv`] reads back). Only the
/// first three contacts fit a row.
pub fn to_csv(subs: &[Subscriber]) -> Result<String, ImportError> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let io = |source| ImportError::Io {
        table: SubscribersCsv,
        source,
    };
    w.write_record(CSV_HEADER.split(','))
        .map_err(|e| io(e.into()))?;
    for s in subs {
        let keys = s.access.keys.to_string();
        let mut row: Vec<&str> = vec![
            &s.id,
            &s.name,
            &s.personal_number,
            &s.address,
            &s.postcode,
            &s.city,
            &s.area,
            &s.phone,
            &s.care_provider,
            &keys,
            &s.access.key_location,
            &s.access.digital_lock_id,
            &s.access.door_code,
            &s.access.entry_notes,
            &s.health_notes,
            &s.care_plan_notes,
        ];
        for i in 0..CSV_CONTACTS {
            match s.contacts.get(i) {
                Some(c) => row.extend([c.name.as_str(), &c.relation, &c.phone]),
                None => row.extend(["", "", ""]),
            }
        }
        row.push(&s.language);
        row.push(if s.needs_extra_visits { "yes" } else { "" });
        row.push(if s.health_to_patrol { "yes" } else { "" });
        row.push(&s.municipality);
        w.write_record(&row).map_err(|e| io(e.into()))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    String::from_utf8(bytes).map_err(|e| io(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_ROW: &str = "S-1001,Åsa Öberg,19400312-1234,Storgatan 1,903 26,Umeå,Centrum,+46 90 12 34 56,Hemtjänst Norr,2,\"Key cabinet, hook 14\",DL-77,4711,Ring twice,Diabetes,Morning visit,Björn Öberg,son,070-123 45 67,,,,,,,";

    fn csv(rows: &[&str]) -> String {
        let mut s = format!("{CSV_HEADER}\n");
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    }

    #[test]
    fn header_has_29_columns_and_the_older_ones_still_read() {
        assert_eq!(CSV_HEADER.split(',').count(), COLUMNS);
        assert_eq!(CSV_HEADER_V3.split(',').count(), COLUMNS - 1);
        assert_eq!(CSV_HEADER_V2.split(',').count(), COLUMNS - 2);
        assert_eq!(CSV_HEADER_V1.split(',').count(), COLUMNS - 3);
        let v3 = format!("{CSV_HEADER_V3}\n{GOOD_ROW},,yes\n");
        let subs = parse_csv(v3.as_bytes()).unwrap();
        assert!(subs[0].health_to_patrol && subs[0].municipality.is_empty());
        let placed = format!("{CSV_HEADER}\n{GOOD_ROW},,, Nordby kommun \n");
        let subs = parse_csv(placed.as_bytes()).unwrap();
        assert_eq!(subs[0].municipality, "Nordby kommun");
        let back = parse_csv(to_csv(&subs).unwrap().as_bytes()).unwrap();
        assert_eq!(back[0].municipality, "Nordby kommun");
        let old = format!("{CSV_HEADER_V1}\n{GOOD_ROW}\n");
        let subs = parse_csv(old.as_bytes()).unwrap();
        assert!(!subs[0].needs_extra_visits);
        assert!(!subs[0].health_to_patrol, "no column: no consent");
        let v2 = format!("{CSV_HEADER_V2}\n{GOOD_ROW},yes\n");
        let subs = parse_csv(v2.as_bytes()).unwrap();
        assert!(subs[0].needs_extra_visits);
        assert!(!subs[0].health_to_patrol);
        let new = format!("{CSV_HEADER}\n{GOOD_ROW},yes\n");
        assert!(parse_csv(new.as_bytes()).unwrap()[0].needs_extra_visits);
        let consent = format!("{CSV_HEADER}\n{GOOD_ROW},,ja\n");
        let s = &parse_csv(consent.as_bytes()).unwrap()[0];
        assert!(s.health_to_patrol && !s.needs_extra_visits);
        let bad = format!("{CSV_HEADER}\n{GOOD_ROW},maybe\n");
        let err = parse_csv(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("needs_extra_visits"), "{err}");
        let bad = format!("{CSV_HEADER}\n{GOOD_ROW},,perhaps\n");
        let err = parse_csv(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("health_to_patrol"), "{err}");
        // Written and read back, the consent stays.
        let mut s = s.clone();
        s.id = "S-2".into();
        let back = parse_csv(to_csv(&[s]).unwrap().as_bytes()).unwrap();
        assert!(back[0].health_to_patrol);
    }

    #[test]
    fn good_file_imports_with_utf8_and_defaults() {
        let subs = parse_csv(csv(&[GOOD_ROW]).as_bytes()).unwrap();
        assert_eq!(subs.len(), 1);
        let s = &subs[0];
        assert_eq!(s.id, "S-1001");
        assert_eq!(s.name, "Åsa Öberg");
        assert_eq!(s.city, "Umeå");
        assert_eq!(s.access.keys, 2);
        assert_eq!(s.access.key_location, "Key cabinet, hook 14");
        assert_eq!(s.access.door_code, "4711");
        assert_eq!(s.contacts.len(), 1, "empty contacts are dropped");
        assert_eq!(s.contacts[0].name, "Björn Öberg");
        assert_eq!(s.contacts[0].phone, "070-123 45 67");
        assert_eq!(s.language, "sv", "default language");
        assert!(validate(s).is_ok());
    }

    #[test]
    fn bom_and_norwegian_numbers_and_quoted_newlines() {
        let rows = [
            "N-1,Ola Nordmann,12034512345,Storgata 2,0155,Oslo,Sentrum,,,,,,,\"Door at the back,\nsecond floor\",,,Kari Nordmann,datter,+47 912 34 567,,,,,,,nb",
            "N-2,Per Persson,450312+1234,,,,,,,0,,,,,,,,,,,,,,,,fi",
        ];
        let text = format!("\u{feff}{}", csv(&rows));
        let subs = parse_csv(text.as_bytes()).unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].language, "nb");
        assert_eq!(
            subs[0].access.entry_notes,
            "Door at the back,\nsecond floor"
        );
        assert_eq!(subs[1].personal_number, "450312+1234");
    }

    #[test]
    fn round_trip_through_to_csv() {
        let subs = parse_csv(csv(&[GOOD_ROW]).as_bytes()).unwrap();
        let text = to_csv(&subs).unwrap();
        assert_eq!(parse_csv(text.as_bytes()).unwrap(), subs);
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_never_show_the_door_code() {
        let rows = [
            GOOD_ROW,
            // 3: bad id
            "S 1,Bo,19400312-1234,,,,,,,,,,9911,,,,,,,,,,,,,",
            // 4: no name, keys not a number
            "S-3,,19400312-1234,,,,,,,two,,,9911,,,,,,,,,,,,,",
            // 5: contact without phone, bad phone, short personal number
            "S-4,Cilla,1234,,,,,070-abc,,,,,9911,,,,Dan,son,,,,,,,,",
            // 6: duplicate of line 2
            "S-1001,Åsa Öberg,19400312-1234,,,,,,,,,,9911,,,,,,,,,,,,,",
            // 7: wrong number of cells
            "S-5,Eva,19400312-1234,9911",
            // 8: contact with a phone but no name, bad language
            "S-6,Fia,19400312-1234,,,,,,,,,,9911,,,,,,0701234567,,,,,,,x",
        ];
        let err = parse_csv(csv(&rows).as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("6 invalid row(s)"), "{err}");
        assert!(err.contains("line 3: id \"S 1\""), "{err}");
        assert!(err.contains("line 4: keys must be a whole number"), "{err}");
        assert!(err.contains("line 5: personal_number"), "{err}");
        assert!(err.contains("phone \"070-abc\""), "{err}");
        assert!(err.contains("contact1 (\"Dan\") has no phone"), "{err}");
        assert!(
            err.contains("line 6: id S-1001 already given on line 2"),
            "{err}"
        );
        assert!(err.contains("line 7: expected 29 cells, found 4"), "{err}");
        assert!(err.contains("line 8: contact1 has no name"), "{err}");
        assert!(err.contains("language \"x\""), "{err}");
        assert!(!err.contains("9911"), "door code echoed: {err}");
        assert!(!err.contains("1234"), "personal number echoed: {err}");
    }

    #[test]
    fn no_name_is_reported() {
        let err = parse_csv(csv(&["S-3,,19400312-1234,,,,,,,,,,,,,,,,,,,,,,,"]).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: name is empty"), "{err}");
    }

    #[test]
    fn wrong_or_missing_header_is_refused_without_echoing_data() {
        let err = parse_csv("id,name\nS-1,Bo\n".as_bytes()).unwrap_err();
        assert!(matches!(err, ImportError::Header(_)));
        assert!(err.to_string().contains("found `id,name`"), "{err}");
        // The header forgotten: the first data row must not be shown.
        let err = parse_csv(format!("{GOOD_ROW}\n").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is the header missing"), "{err}");
        assert!(!err.contains("4711"), "{err}");
    }

    #[test]
    fn empty_file_is_refused() {
        assert!(matches!(
            parse_csv(csv(&[]).as_bytes()),
            Err(ImportError::Empty)
        ));
        assert!(matches!(
            parse_csv(csv(&[",,,,,,,,,,,,,,,,,,,,,,,,,"]).as_bytes()),
            Err(ImportError::Empty)
        ));
        assert!(matches!(
            parse_csv("".as_bytes()),
            Err(ImportError::Header(_))
        ));
    }

    #[test]
    fn invalid_utf8_is_reported_by_line() {
        let mut bytes = csv(&[GOOD_ROW]).into_bytes();
        bytes.extend_from_slice(b"S-9,\xC5sa,19400312-1234,,,,,,,,,,,,,,,,,,,,,,,\n");
        let err = parse_csv(&bytes[..]).unwrap_err().to_string();
        assert!(err.contains("line 3: cell 2 is not valid UTF-8"), "{err}");
    }

    #[test]
    fn validate_checks_what_put_sends() {
        let mut s = parse_csv(csv(&[GOOD_ROW]).as_bytes()).unwrap().remove(0);
        assert!(validate(&s).is_ok());
        s.access.door_code = "x".repeat(MAX_SHORT_CHARS + 1);
        s.health_notes = "y".repeat(MAX_NOTE_CHARS + 1);
        s.language = String::new();
        s.contacts.push(Contact::default());
        let err = validate(&s).unwrap_err();
        assert!(err.contains("door_code is longer than 200"), "{err}");
        assert!(err.contains("health_notes is longer than 4000"), "{err}");
        assert!(err.contains("contact2 has no name"), "{err}");
        assert!(err.contains("language"), "{err}");
        assert!(!err.contains("xxx") && !err.contains("yyy"), "{err}");

        normalize(&mut s);
        assert_eq!(s.language, "sv");
        assert_eq!(s.contacts.len(), 1);
    }

    #[test]
    fn ids_and_numbers() {
        assert!(valid_id("S-1001") && valid_id("a.b_c") && valid_id(&"x".repeat(64)));
        assert!(!valid_id("") && !valid_id("å") && !valid_id(&"x".repeat(65)));
        for ok in [
            "19400312-1234",
            "400312-1234",
            "12034512345",
            "194003121234",
        ] {
            assert!(valid_personal_number(ok), "{ok}");
        }
        for bad in ["", "123", "19400312-12345", "4003l2-1234", "----------"] {
            assert!(!valid_personal_number(bad), "{bad}");
        }
        assert!(valid_phone("+46 70-123 45 67") && !valid_phone("112a") && !valid_phone("+-"));
    }
}
