#!/usr/bin/env bash
# Runs every check the project has, the same way on a laptop and in CI:
# installs the independent initiators (libiscsi), the reference target (tgt) and iproute2 (for
# the kernel-initiator test's network namespace) when missing, then formatting, lints, the API
# docs (warnings denied), the binaries, `cargo test --workspace` (unit, component and system
# tests; the system tests drive the real binaries with libiscsi's tools and with the Linux
# kernel's initiator in a QEMU guest; one checks the layering rules of docs/ARCHITECTURE.md), and a
# deterministic run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v iscsi-test-cu >/dev/null || need+=(libiscsi-bin)
[[ -f /usr/include/iscsi/iscsi.h ]] || need+=(libiscsi-dev)
command -v tgtd >/dev/null || need+=(tgt)
# The kernel-initiator test creates a network namespace and unpacks Debian packages
# (the guest and QEMU) with apt-get download and dpkg-deb; it needs ip and ldd.
command -v ip >/dev/null || need+=(iproute2)
command -v ldd >/dev/null || need+=(libc-bin)
if ((${#need[@]})); then
  echo "installing ${need[*]}" >&2
  sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Every doc comment's links and code resolve: a stale or broken one fails like a lint.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
# The system tests spawn these binaries; build them before the tests run.
cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast 2>&1
# The parsers of untrusted input (PDUs, text keys, CDBs, control-socket frames) under
# coverage-guided fuzzing, a fixed number of inputs each.
scripts/fuzz-smoke.sh
