//! Judging a run of libiscsi's `iscsi-test-cu` (the conformance gate of
//! `tests/tests/libiscsi.rs`, numbers in `docs/conformance.md`).
//!
//! `iscsi-test-cu -x` writes CUnit's `CUnitAutomated-Results.xml`: one record per assertion
//! outcome, each naming its suite and test, and a summary. A test passes when none of its
//! records is a failure. A test that skips itself (it needs a feature the target does not
//! offer) still counts as passed in the XML and prints `[SKIPPED]` on standard output, so
//! the tests that really ran are the passed ones minus the skips, as
//! `../shared/bench/conformance.sh` counts them.
//!
//! The gate: every test passes unless the allow-list names it with a reason, and at least
//! [`RAN_FOR_REAL_RECORDED`] tests really ran. A feature that starts skipping, or a run
//! that stops half way, lowers that count and fails the gate as surely as a failed test.

use std::collections::BTreeMap;

/// Tests of `--test=ALL -S` (sanitize allowed) over one path that really ran (passed, not
/// skipped) in the last recorded run, on a removable LU (`docs/conformance.md`: 230/230
/// passed, 217 ran for real on the file and the io_uring backends). Raise it when a feature makes more tests
/// run; never lower it to make a regression pass.
///
/// The four MultipathIO tests skip in that run and run in a second one over two portals
/// ([`MULTIPATH_TESTS`]): with a second path given to `--test=ALL`, Sanitize.Reservations
/// takes a RESERVE (6) on that path and never releases it (the path stays logged in), so
/// Sanitize.Reset, next in line, ends in RESERVATION CONFLICT.
pub const RAN_FOR_REAL_RECORDED: usize = 217;

/// The `--test=ALL.MultipathIO` run over two portals: every one of its tests must run for
/// real.
pub const MULTIPATH_TESTS: usize = 4;

/// The allow-list file, relative to the system-test crate: tests allowed to fail.
pub const ALLOW_LIST_PATH: &str = "conformance/allowed-failures.txt";

/// The verdicts of one `iscsi-test-cu` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CuRun {
    /// `Suite.Test` → passed.
    pub verdicts: BTreeMap<String, bool>,
    /// How many `[SKIPPED]` lines the run printed.
    pub skipped: usize,
}

impl CuRun {
    /// Parses the XML results and the run's standard output and error.
    ///
    /// Fails when the XML holds no test, or when the failed tests counted from the records
    /// disagree with CUnit's own summary (the parser and the file no longer agree).
    pub fn parse(xml: &str, output: &str) -> Result<Self, String> {
        let mut verdicts = BTreeMap::new();
        let mut suite = String::new();
        let mut rest = xml;
        while let Some(i) = rest.find('<') {
            rest = &rest[i..];
            if rest.starts_with("<SUITE_NAME>") {
                suite = element_text(rest, "SUITE_NAME").unwrap_or_default();
            } else if rest.starts_with("<CUNIT_RUN_TEST_SUCCESS>")
                || rest.starts_with("<CUNIT_RUN_TEST_FAILURE>")
            {
                let ok = rest.starts_with("<CUNIT_RUN_TEST_SUCCESS>");
                if let Some(name) = element_text(rest, "TEST_NAME") {
                    let e = verdicts.entry(format!("{suite}.{name}")).or_insert(true);
                    *e = *e && ok;
                }
            }
            rest = &rest[1..];
        }
        if verdicts.is_empty() {
            return Err("the results hold no test".to_string());
        }
        let run = Self {
            verdicts,
            skipped: output.matches("[SKIPPED]").count(),
        };
        if let Some(summary) = summary_failed_tests(xml) {
            let counted = run.failed().len();
            if summary != counted {
                return Err(format!(
                    "CUnit's summary says {summary} tests failed, the records {counted}"
                ));
            }
        }
        Ok(run)
    }

    /// Tests run (passed, failed or skipped).
    pub fn total(&self) -> usize {
        self.verdicts.len()
    }

    /// Tests that passed, skipped ones included.
    pub fn passed(&self) -> usize {
        self.verdicts.values().filter(|ok| **ok).count()
    }

    /// Tests that passed without skipping.
    pub fn ran_for_real(&self) -> usize {
        self.passed().saturating_sub(self.skipped)
    }

    /// The failed tests, as `Suite.Test`, ascending.
    pub fn failed(&self) -> Vec<&str> {
        self.verdicts
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Everything wrong with this run: each failed test the allow-list does not name, and
    /// fewer tests really run than `ran_for_real_min`. Empty when the run is good.
    pub fn problems(&self, allowed: &AllowList, ran_for_real_min: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .failed()
            .into_iter()
            .filter(|name| !allowed.contains(name))
            .map(|name| format!("{name} failed"))
            .collect();
        if self.ran_for_real() < ran_for_real_min {
            out.push(format!(
                "only {} tests really ran ({} passed, {} of them skipped); {ran_for_real_min} are recorded",
                self.ran_for_real(),
                self.passed(),
                self.skipped
            ));
        }
        out
    }
}

/// The trimmed text of the first `<name>..</name>` in `s`.
fn element_text(s: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let a = s.find(&open)? + open.len();
    let b = s[a..].find(&close)? + a;
    Some(s[a..b].trim().to_string())
}

/// `FAILED` of the summary record whose `TYPE` is `Test Cases`.
fn summary_failed_tests(xml: &str) -> Option<usize> {
    xml.split("<CUNIT_RUN_SUMMARY_RECORD>")
        .skip(1)
        .find(|r| element_text(r, "TYPE").as_deref() == Some("Test Cases"))
        .and_then(|r| element_text(r, "FAILED"))
        .and_then(|n| n.parse().ok())
}

/// Tests allowed to fail, each with the reason it may.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// `Suite.Test` → reason.
    pub entries: BTreeMap<String, String>,
}

impl AllowList {
    /// Parses the allow-list: one `Suite.Test: reason` per line; blank lines and lines
    /// starting with `#` are ignored. An entry without a reason, or named twice, is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, reason) = line.split_once(':').unwrap_or((line, ""));
            let (name, reason) = (name.trim(), reason.trim());
            if name.is_empty() || name.contains(char::is_whitespace) || !name.contains('.') {
                return Err(format!(
                    "line {}: {line:?} is not `Suite.Test: reason`",
                    i + 1
                ));
            }
            if reason.is_empty() {
                return Err(format!("line {}: {name} has no reason", i + 1));
            }
            if entries
                .insert(name.to_string(), reason.to_string())
                .is_some()
            {
                return Err(format!("line {}: {name} is listed twice", i + 1));
            }
        }
        Ok(Self { entries })
    }

    /// Whether `test` (`Suite.Test`) may fail.
    pub fn contains(&self, test: &str) -> bool {
        self.entries.contains_key(test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real run, captured: `iscsi-test-cu -d -x --test=SCSI.GetLBAStatus` against a
    /// read-only LU, where UnmapSingle fails (its WRITE and UNMAP get WRITE PROTECTED).
    const ONE_FAILURE_XML: &str =
        include_str!("../fixtures/iscsi-test-cu/get-lba-status-read-only.xml");
    const ONE_FAILURE_OUT: &str =
        include_str!("../fixtures/iscsi-test-cu/get-lba-status-read-only.txt");
    /// A real run, captured: `--test=SCSI.StartStopUnit`, all passed, one skipped (the LU
    /// is not removable).
    const ONE_SKIP_XML: &str = include_str!("../fixtures/iscsi-test-cu/start-stop-unit.xml");
    const ONE_SKIP_OUT: &str = include_str!("../fixtures/iscsi-test-cu/start-stop-unit.txt");

    #[test]
    fn one_failed_test_fails_the_gate_and_is_named() {
        let run = CuRun::parse(ONE_FAILURE_XML, ONE_FAILURE_OUT).unwrap();
        assert_eq!(run.total(), 3);
        assert_eq!(run.passed(), 2);
        assert_eq!(run.failed(), vec!["GetLBAStatus.UnmapSingle"]);
        assert_eq!(
            run.problems(&AllowList::default(), 0),
            vec!["GetLBAStatus.UnmapSingle failed"]
        );
    }

    #[test]
    fn an_allowed_failure_passes_the_gate_and_only_that_one() {
        let run = CuRun::parse(ONE_FAILURE_XML, ONE_FAILURE_OUT).unwrap();
        let allowed =
            AllowList::parse("# why\nGetLBAStatus.UnmapSingle: the LU is read-only\n").unwrap();
        assert!(run.problems(&allowed, 2).is_empty());
        let other = AllowList::parse("GetLBAStatus.Simple: not this one\n").unwrap();
        assert_eq!(
            run.problems(&other, 2),
            vec!["GetLBAStatus.UnmapSingle failed"]
        );
    }

    #[test]
    fn skipped_tests_do_not_count_as_really_run() {
        let run = CuRun::parse(ONE_SKIP_XML, ONE_SKIP_OUT).unwrap();
        assert_eq!((run.total(), run.passed(), run.skipped), (3, 3, 1));
        assert_eq!(run.ran_for_real(), 2);
        assert!(run.problems(&AllowList::default(), 2).is_empty());
        assert_eq!(
            run.problems(&AllowList::default(), 3),
            vec!["only 2 tests really ran (3 passed, 1 of them skipped); 3 are recorded"]
        );
    }

    #[test]
    fn results_the_parser_cannot_read_are_an_error() {
        assert!(CuRun::parse("", "").is_err());
        // The summary says one test failed; with its failure records gone the parser and the
        // file disagree.
        let tampered = ONE_FAILURE_XML.replace("CUNIT_RUN_TEST_FAILURE", "CUNIT_RUN_TEST_SUCCESS");
        assert!(CuRun::parse(&tampered, ONE_FAILURE_OUT)
            .unwrap_err()
            .contains("summary says 1"));
    }

    #[test]
    fn allow_list_entries_need_a_name_and_a_reason() {
        assert!(AllowList::parse("").unwrap().entries.is_empty());
        assert!(AllowList::parse("Suite.Test\n")
            .unwrap_err()
            .contains("no reason"));
        assert!(AllowList::parse("Suite.Test:   \n")
            .unwrap_err()
            .contains("no reason"));
        assert!(AllowList::parse("just words: why\n").is_err());
        assert!(AllowList::parse("A.b: x\nA.b: y\n")
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn the_checked_in_allow_list_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(ALLOW_LIST_PATH);
        let text = std::fs::read_to_string(&path).unwrap();
        AllowList::parse(&text).unwrap();
    }
}
