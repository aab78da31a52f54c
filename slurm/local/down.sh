#!/usr/bin/env bash
# Stop the single-node SLURM test cluster started by up.sh (idempotent).
#
#   slurm/local/down.sh           stop slurmd, slurmctld and munged
#   slurm/local/down.sh --purge   also delete the state folder ($LATXA_SLURM_DIR, default /tmp/latxa-slurm)
set -euo pipefail

DIR="${LATXA_SLURM_DIR:-/tmp/latxa-slurm}"
log() { echo "[slurm-down] $*"; }

stop_pidfile() {  # name pidfile
  local name="$1" pidfile="$2" pid
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name ($pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

if [ -d "$DIR" ]; then
  if [ -s "$DIR/slurm.conf" ] && [ -s "$DIR/run/slurmctld.pid" ] && command -v scancel >/dev/null 2>&1; then
    SLURM_CONF="$DIR/slurm.conf" timeout 10 scancel --full --user "$(id -un)" >/dev/null 2>&1 || true
  fi
  stop_pidfile slurmd "$DIR/run/slurmd.pid"
  stop_pidfile slurmctld "$DIR/run/slurmctld.pid"
  stop_pidfile munged "$DIR/munge/munged.pid"
fi
if [ "${1:-}" = "--purge" ]; then
  rm -rf "$DIR"
  log "removed $DIR"
fi
log "stopped"
