#!/usr/bin/env bash
# A single-node Ceph cluster (Ceph 16.2 from Debian 12's packages) for the RBD backend's tests:
# one monitor on 127.0.0.1 at a free port, one bluestore OSD on a sparse file, no manager, no
# systemd, no containers. Everything lives in DIR; the daemons' PIDs are recorded in DIR/pids
# and `stop` signals only those.
#
#   scripts/ceph-single-node.sh start DIR   # create (or restart on DIR's data) and wait until
#                                           # the pool `rbd` serves I/O; prints DIR/ceph.conf
#   scripts/ceph-single-node.sh stop DIR    # SIGTERM, then SIGKILL, the recorded daemons
#   scripts/ceph-single-node.sh status DIR  # running daemons, and whether the cluster answers
#
# After `start`, clients use `-c DIR/ceph.conf` (it names the admin keyring), for example
# `rbd -c DIR/ceph.conf create --size 1G rbd/disk`.
#
# Environment: OSD_SIZE_BYTES (default 6 GiB; the file is sparse, only what is written takes
# disk space), CEPH_START_TIMEOUT_S (default 90). The packages come from
# scripts/test-all.sh's list: ceph-mon, ceph-osd, ceph-common, librbd1.
set -Eeuo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
  echo "usage: $0 start|stop|status DIR" >&2
  exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/ceph.conf
pids=$dir/pids
osd_size=${OSD_SIZE_BYTES:-$((6 << 30))}
timeout_s=${CEPH_START_TIMEOUT_S:-90}

log() { echo "ceph-single-node: $*" >&2; }

# Daemons this run started; waiting stops early when one of them exits.
started=()

require_tools() {
  local missing=()
  for t in ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  if ((${#missing[@]})); then
    log "missing ${missing[*]}: install the Debian packages ceph-mon ceph-osd ceph-common librbd1 (scripts/test-all.sh does)"
    exit 1
  fi
}

# A TCP port on 127.0.0.1 that nobody listens on right now (the kernel picks it).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() { [[ -f $pids/$1.pid ]] && kill -0 "$(cat "$pids/$1.pid")" 2>/dev/null; }

stop_daemons() {
  local name pid deadline
  [[ -d $pids ]] || return 0
  for f in "$pids"/*.pid; do
    [[ -e $f ]] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
  done
  deadline=$((SECONDS + 15))
  for f in "$pids"/*.pid; do
    [[ -e $f ]] || continue
    name=$(basename "$f" .pid)
    pid=$(cat "$f")
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

# Runs a daemon in the foreground of its own session, output to its log, PID recorded.
spawn() {
  local name=$1
  shift
  setsid "$@" -f -c "$conf" </dev/null >>"$dir/log/$name.out" 2>&1 &
  echo $! >"$pids/$name.pid"
  started+=("$name")
}

ceph_cli() { timeout 30 ceph -c "$conf" --connect-timeout 10 "$@"; }

wait_until() {
  local what=$1 deadline=$((SECONDS + timeout_s))
  shift
  until "$@" >/dev/null 2>&1; do
    for d in "${started[@]}"; do
      if ! alive "$d"; then
        log "$d exited while waiting for $what: $(tail -n 3 "$dir/log/$d.out" 2>/dev/null | tr '\n' ' ')"
        return 1
      fi
    done
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout_s}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

osd_up() { ceph_cli osd dump 2>/dev/null | grep -q '^osd\.0 up'; }

write_conf() {
  local port=$1 fsid=$2
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$port
mon_initial_members = a
public_network = 127.0.0.0/8
ms_bind_msgr1 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
run_dir = $dir/run
log_file = $dir/log/\$name.log
crash_dir = $dir/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
# A client killed with SIGKILL keeps its watch, and so blocks a new owner of its RBD
# image's exclusive lock, until this many seconds pass (default 30).
osd_client_watch_timeout = 5
[mon]
admin_socket = $dir/run/\$name.asok
mon_data = $dir/mon/\$cluster-\$id
keyring = \$mon_data/keyring
# A test cluster on a nearly full disk still starts (the OSD file is small and sparse);
# -1 turns the check off (0 still refuses a disk that is under 1 % free).
mon_data_avail_warn = -1
mon_data_avail_crit = -1
[osd]
admin_socket = $dir/run/\$name.asok
osd_data = $dir/osd/\$cluster-\$id
keyring = \$osd_data/keyring
osd_objectstore = bluestore
bluestore_block_path = $dir/osd/block
bluestore_block_create = true
bluestore_block_size = $osd_size
bluestore_fsck_on_mkfs = false
osd_memory_target = 939524096
osd_max_object_size = 134217728
osd_op_num_shards = 2
[client]
keyring = $dir/client.admin.keyring
rbd_cache = false
EOF
}

create() {
  local fsid port uuid
  mkdir -p "$dir/run" "$dir/log" "$dir/crash" "$dir/mon/ceph-a" "$dir/osd/ceph-0" "$pids"
  fsid=$(uuidgen)
  port=$(free_port)
  write_conf "$port" "$fsid"
  ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$dir/client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$dir/mon.keyring" --import-keyring "$dir/client.admin.keyring" >/dev/null
  monmaptool --create --addv a "[v2:127.0.0.1:$port]" --fsid "$fsid" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring" \
    >>"$dir/log/mkfs.out" 2>&1
  spawn mon.a ceph-mon -i a
  wait_until "the monitor on 127.0.0.1:$port" ceph_cli mon stat
  uuid=$(uuidgen)
  ceph_cli osd new "$uuid" >/dev/null
  ceph-osd -c "$conf" -i 0 --mkfs --mkkey --no-mon-config --osd-uuid "$uuid" >>"$dir/log/mkfs.out" 2>&1
  ceph_cli auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
    -i "$dir/osd/ceph-0/keyring" >/dev/null 2>&1
  spawn osd.0 ceph-osd -i 0
  wait_until "osd.0 up" osd_up
  ceph_cli osd pool create rbd 16 16 >/dev/null 2>&1
  ceph_cli osd pool application enable rbd rbd >/dev/null 2>&1
}

restart() {
  mkdir -p "$pids"
  alive mon.a || spawn mon.a ceph-mon -i a
  wait_until "the monitor" ceph_cli mon stat
  alive osd.0 || spawn osd.0 ceph-osd -i 0
  wait_until "osd.0 up" osd_up
}

# I/O works once the pool's placement groups are active: a write to a RADOS object blocks
# until then (there is no manager to report PG states).
pool_serves_io() {
  echo ready | timeout 20 rados -c "$conf" -p rbd put ceph-single-node-probe -
}

case $cmd in
start)
  require_tools
  t0=$(date +%s.%N)
  if alive mon.a && alive osd.0; then
    log "already running"
  else
    trap 'log "start failed; stopping what it started (logs in $dir/log)"; stop_daemons' ERR
    if [[ -f $dir/mon/ceph-a/keyring && -f $conf ]]; then
      restart
    else
      create
    fi
    wait_until "pool rbd to serve I/O" pool_serves_io
    trap - ERR
  fi
  t1=$(date +%s.%N)
  log "cluster up in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s: $(sed -n 's/^mon_host = //p' "$conf")"
  echo "$conf"
  ;;
stop)
  stop_daemons
  ;;
status)
  for n in mon.a osd.0; do
    if alive "$n"; then echo "$n running (pid $(cat "$pids/$n.pid"))"; else echo "$n stopped"; fi
  done
  if [[ -f $conf ]] && ceph_cli -s; then exit 0; else exit 1; fi
  ;;
*)
  echo "usage: $0 start|stop|status DIR" >&2
  exit 2
  ;;
esac
