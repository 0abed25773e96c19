//! The layering rules of `docs/ARCHITECTURE.md` hold on the workspace as it is: no module
//! imports across a forbidden edge (see `tgt_system_tests::layering` for the edges and how
//! they are checked).

use std::path::Path;

use tgt_system_tests::layering::{
    check_workspace, FORBIDDEN_IMPORTS, NOT_ON_DATAPLANE, NO_SOCKETS_NO_CLOCK,
};

#[test]
fn no_module_imports_across_a_forbidden_edge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the system tests live one level below the workspace root");
    let report = check_workspace(root).expect("read the workspace sources");
    // A scan that found nothing to read would pass vacuously.
    for (scope, files) in &report.files_checked {
        assert!(
            *files > 0,
            "no sources found for `{scope}` under {}",
            root.display()
        );
    }
    assert_eq!(
        report.files_checked.len(),
        FORBIDDEN_IMPORTS.len() + NO_SOCKETS_NO_CLOCK.len() + NOT_ON_DATAPLANE.len(),
        "every rule scope was checked: {:?}",
        report.files_checked
    );
    let list: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
    assert!(
        list.is_empty(),
        "imports across a forbidden edge (docs/ARCHITECTURE.md, Invariants):\n{}",
        list.join("\n")
    );
}
