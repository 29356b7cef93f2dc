//! The monthly billing export (seed 001 1.2.10, 4.8; seed 000): one row per subscriber billed
//! in the month, from the month of installation to the month of ending inclusive
//! ([`billed`]), under the municipality that pays (the placing one, or the centre's) and the
//! provider of the month's last day billed. Pure: the lives and names are parameters.
//!
//! CSV: `;` as the separator and a UTF-8 byte-order mark, which Swedish spreadsheet programs
//! open as they are; JSON: the rows.

use std::collections::HashMap;

use jiff::civil::Date;
use serde::Serialize;
use utoipa::ToSchema;

use crate::model::life::Life;
use crate::model::order::{Month, billed, provider_on};

/// One subscriber billed in one month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Row {
    /// `YYYY-MM`.
    pub month: String,
    /// Who pays.
    pub municipality: String,
    /// The provider on the month's last day billed.
    pub provider: String,
    /// The subscriber id.
    pub subscriber: String,
    /// The subscriber's name.
    pub name: String,
    /// The first day in service.
    pub installed_on: Date,
    /// The last day, if ended.
    pub ended_on: Option<Date>,
}

/// The last day of `m`.
fn last_day(m: Month) -> Option<Date> {
    Date::new(m.year, m.month, 1)
        .ok()
        .map(|d| d.last_of_month())
}

/// The rows of `month`: per municipality, provider and subscriber. `placed` maps a
/// subscriber to the municipality that pays when it is not `home`; `names` gives the names.
pub fn rows(
    lives: &[Life],
    month: Month,
    placed: &HashMap<String, String>,
    names: &HashMap<String, String>,
    home: &str,
) -> Vec<Row> {
    let mut out: Vec<Row> = lives
        .iter()
        .filter_map(|l| {
            // The latest period billed in the month (an alarm ordered again may end and
            // start in one month: billed once).
            let (installed, ended, providers) = l
                .periods()
                .into_iter()
                .rev()
                .find(|(installed, ended, _)| billed(*installed, *ended, month))?;
            let last = last_day(month)?;
            let day = ended.map_or(last, |e| e.min(last));
            Some(Row {
                month: month.to_string(),
                municipality: placed
                    .get(&l.subscriber)
                    .cloned()
                    .unwrap_or_else(|| home.to_owned()),
                provider: provider_on(providers, day).unwrap_or("").to_owned(),
                subscriber: l.subscriber.clone(),
                name: names.get(&l.subscriber).cloned().unwrap_or_default(),
                installed_on: installed,
                ended_on: ended,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.municipality, &a.provider, &a.subscriber).cmp(&(
            &b.municipality,
            &b.provider,
            &b.subscriber,
        ))
    });
    out
}

/// One CSV cell: quoted when it holds the separator, a quote or a line break; a cell that
/// starts like a formula is prefixed with `'` so a spreadsheet shows it as text.
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The rows as CSV: a UTF-8 BOM, a header, `;` between cells, CRLF line ends.
pub fn to_csv(rows: &[Row]) -> String {
    let mut out = String::from("\u{feff}");
    out.push_str("month;municipality;provider;subscriber;name;installed_on;ended_on\r\n");
    for r in rows {
        let cells = [
            cell(&r.month),
            cell(&r.municipality),
            cell(&r.provider),
            cell(&r.subscriber),
            cell(&r.name),
            r.installed_on.to_string(),
            r.ended_on.map(|d| d.to_string()).unwrap_or_default(),
        ];
        out.push_str(&cells.join(";"));
        out.push_str("\r\n");
    }
    out
}

/// The rows as a plain table for a terminal (tab-separated, a header first).
pub fn to_text(rows: &[Row]) -> String {
    let mut out =
        String::from("month\tmunicipality\tprovider\tsubscriber\tname\tinstalled_on\tended_on\n");
    for r in rows {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            r.month,
            r.municipality,
            r.provider,
            r.subscriber,
            r.name,
            r.installed_on,
            r.ended_on
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into())
        ));
    }
    out.push_str(&format!("{} subscribers\n", rows.len()));
    out
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;
    use crate::model::order::ProviderPeriod;

    fn life(id: &str, installed: Date, ended: Option<Date>, providers: &[(Date, &str)]) -> Life {
        let mut l = Life::ordered(id, None, jiff::Timestamp::UNIX_EPOCH, "t");
        l.installed_on = Some(installed);
        l.ended_on = ended;
        l.providers = providers
            .iter()
            .map(|(from, p)| ProviderPeriod {
                from: *from,
                provider: (*p).into(),
            })
            .collect();
        l
    }

    #[test]
    fn billed_from_the_installation_month_to_the_ending_month_with_the_months_last_provider() {
        // Installed on the 31st, ended on the 1st: both months are billed.
        let lives = vec![
            life(
                "S-1",
                date(2026, 10, 31),
                Some(date(2026, 12, 1)),
                &[(date(2026, 10, 31), "norr"), (date(2026, 11, 20), "syd")],
            ),
            life(
                "S-2",
                date(2026, 11, 5),
                None,
                &[(date(2026, 11, 5), "norr")],
            ),
        ];
        let mut placed = HashMap::new();
        placed.insert("S-2".to_owned(), "Grannby".to_owned());
        let names = HashMap::from([("S-1".to_owned(), "Åsa; \"Öberg\"".to_owned())]);
        let m = |s: &str| s.parse::<Month>().unwrap();
        let sep = rows(&lives, m("2026-09"), &placed, &names, "Vaktby");
        assert!(sep.is_empty());
        let oct = rows(&lives, m("2026-10"), &placed, &names, "Vaktby");
        assert_eq!(oct.len(), 1);
        assert_eq!(oct[0].provider, "norr");
        let nov = rows(&lives, m("2026-11"), &placed, &names, "Vaktby");
        assert_eq!(
            nov.iter()
                .map(|r| (
                    r.municipality.as_str(),
                    r.provider.as_str(),
                    r.subscriber.as_str()
                ))
                .collect::<Vec<_>>(),
            vec![("Grannby", "norr", "S-2"), ("Vaktby", "syd", "S-1")]
        );
        let dec = rows(&lives, m("2026-12"), &placed, &names, "Vaktby");
        assert_eq!(dec.len(), 2);
        assert_eq!(dec[1].provider, "syd");
        assert_eq!(dec[1].ended_on, Some(date(2026, 12, 1)));
        let jan = rows(&lives, m("2027-01"), &placed, &names, "Vaktby");
        assert_eq!(jan.len(), 1);

        let csv = to_csv(&dec);
        assert!(csv.starts_with('\u{feff}'));
        let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').split("\r\n").collect();
        assert_eq!(
            lines[0],
            "month;municipality;provider;subscriber;name;installed_on;ended_on"
        );
        assert_eq!(lines[1], "2026-12;Grannby;norr;S-2;;2026-11-05;");
        assert_eq!(
            lines[2],
            "2026-12;Vaktby;syd;S-1;\"Åsa; \"\"Öberg\"\"\";2026-10-31;2026-12-01"
        );
    }

    #[test]
    fn a_cell_that_looks_like_a_formula_is_text() {
        assert_eq!(cell("=1+1"), "'=1+1");
        assert_eq!(cell("plain"), "plain");
    }
}
