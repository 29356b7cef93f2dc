//! The centre's staff list (`staff.csv`): whom a supervisor calls in when the staffing floor is
//! breached or Calls wait too long (`crate::console::staffing`). Imported beside the
//! directory's four files, by the registers' one loader ([`crate::registers::csv`]), all rows
//! or none.
//!
//! The file is UTF-8 CSV with exactly the header [`STAFF_HEADER`], `name,phone,role,note`:
//! a name (1 to 200 characters, unique ignoring case), a phone (digits, spaces, `+` and `-`,
//! at least 3 digits: the list is for calling), the person's role in words (may be empty) and
//! a note for the supervisor (may be empty; at most 200 characters). The list keeps the file's
//! order: put the first to call first.

use std::io::Read;

use crate::model::staff::StaffMember;
use crate::registers::csv::{Header, ImportFile, read_all_or_nothing};
use crate::registers::subscribers::{MAX_SHORT_CHARS, shown, valid_phone};

/// Header of the staff file.
pub const STAFF_HEADER: &str = "name,phone,role,note";

/// The demo centre's staff (`config/demo-directory/staff.csv`).
pub const DEMO_STAFF: &str = include_str!("../../config/demo-directory/staff.csv");

/// The staff file, as messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaffFile;

impl ImportFile for StaffFile {
    const ROWS: &'static str = "people";
    const SEVERAL: bool = false;
    fn name(self) -> &'static str {
        "staff"
    }
}

/// Why a staff import failed; nothing was imported.
pub type ImportError = crate::registers::csv::ImportError<StaffFile>;

/// Parses and checks the staff file: every person, in the file's order, or every problem.
pub fn parse_staff(input: impl Read) -> Result<Vec<StaffMember>, ImportError> {
    read_all_or_nothing(
        input,
        StaffFile,
        &[Header::new(STAFF_HEADER)],
        |rec, _line| {
            let cell = |i| rec.get(i).unwrap_or("");
            let (name, phone, role, note) = (cell(0), cell(1), cell(2), cell(3));
            let mut errs = Vec::new();
            if name.is_empty() {
                errs.push("name is empty".to_string());
            }
            for (field, v) in [("name", name), ("role", role), ("note", note)] {
                if v.chars().count() > MAX_SHORT_CHARS {
                    errs.push(format!(
                        "{field} is longer than {MAX_SHORT_CHARS} characters"
                    ));
                }
            }
            if phone.is_empty() {
                errs.push("phone is empty: the list is for calling people in".to_string());
            } else if !valid_phone(phone) {
                errs.push(format!(
                    "phone {} must be digits, spaces, '+' and '-' (at least 3 digits, at most 32)",
                    shown(phone)
                ));
            }
            if !errs.is_empty() {
                return Err(errs.join("; "));
            }
            Ok(StaffMember {
                name: name.to_string(),
                phone: phone.to_string(),
                role: role.to_string(),
                note: note.to_string(),
            })
        },
        |m| format!("name {}", shown(&m.name.to_lowercase())),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_staff_parses_in_file_order() {
        let staff = parse_staff(DEMO_STAFF.as_bytes()).unwrap();
        assert!(staff.len() >= 4, "{staff:?}");
        assert!(staff.iter().all(|m| valid_phone(&m.phone)));
        let first = DEMO_STAFF.lines().nth(1).unwrap();
        assert!(first.starts_with(&staff[0].name), "{first}");
    }

    #[test]
    fn every_problem_by_line_and_nothing_imported() {
        let text = "\u{feff}name,phone,role,note\n\
                    Karin Berg,070-111 22 33,larmoperatör,\n\
                    ,07,,\n\
                    karin berg,070-111 22 34,,\n\
                    Per Holm,,reserve,nights only\n\
                    Lena Ek,ring me,,\n";
        let e = parse_staff(text.as_bytes()).unwrap_err();
        let ImportError::Invalid(problems) = e else {
            panic!("{e:?}")
        };
        let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 5, 6], "{problems:?}");
        assert!(problems[0].message.contains("name is empty"));
        assert!(problems[0].message.contains("phone \"07\""));
        assert!(problems[1].message.contains("already given on line 2"));
        assert!(problems[2].message.contains("phone is empty"));
        assert!(problems[3].message.contains("phone \"ring me\""));

        let ok =
            parse_staff("name,phone,role,note\nPer Holm,+46 70 222 33 44,,\n".as_bytes()).unwrap();
        assert_eq!(
            ok,
            [StaffMember {
                name: "Per Holm".into(),
                phone: "+46 70 222 33 44".into(),
                role: String::new(),
                note: String::new(),
            }]
        );
        let e = parse_staff("name,phone,role\nPer,070 123,x\n".as_bytes()).unwrap_err();
        assert!(e.to_string().contains("name,phone,role,note"), "{e}");
    }
}
