//! One problem of a record someone typed (a subscriber edited in the console, a row of an
//! import): the field it concerns, a stable `code` with the values its words name, and the
//! English text. The console words the code in the user's language (`problem.{code}` in its
//! catalogue) and marks the field; the CLI, the logs and API clients that do not know the
//! code read the text.

use std::fmt;

/// One problem, for the person who typed the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field it concerns, as the API and the CSV name it (`phone`, `contact2_phone`).
    pub field: String,
    /// Its stable name (`subscriber.phone`); see [`CODES`].
    pub code: &'static str,
    /// The values its words name, in order (`("value", "\"07x\"")`).
    pub params: Vec<(&'static str, String)>,
    /// In English.
    pub text: String,
}

/// Every code a [`FieldProblem`] may carry (the console's catalogue words each; a test checks it).
pub const CODES: &[&str] = &[
    "directory.area_unserved",
    "directory.area_elsewhere",
    "directory.unknown_area",
    "directory.unknown_provider",
    "subscriber.contact_no_name",
    "subscriber.contact_no_phone",
    "subscriber.contact_phone",
    "subscriber.contact_too_long",
    "subscriber.contacts_too_many",
    "subscriber.id",
    "subscriber.language",
    "subscriber.name_empty",
    "subscriber.personal_number",
    "subscriber.personal_number_empty",
    "subscriber.phone",
    "subscriber.too_long",
];

impl FieldProblem {
    /// A problem of `field`, `code`, in English `text`.
    pub fn new(
        field: impl Into<String>,
        code: &'static str,
        text: impl Into<String>,
    ) -> FieldProblem {
        debug_assert!(CODES.contains(&code), "{code} is not in CODES");
        FieldProblem {
            field: field.into(),
            code,
            params: Vec::new(),
            text: text.into(),
        }
    }

    /// With a value its words name.
    pub fn param(mut self, name: &'static str, value: impl ToString) -> FieldProblem {
        self.params.push((name, value.to_string()));
        self
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
