#!/usr/bin/env bash
# Bring up the single-node SLURM test cluster on localhost (idempotent).
#
#   slurm/local/up.sh            install slurm-wlm + munge if missing, configure, start, wait until idle
#   LATXA_SLURM_DIR=/tmp/x ...   use another state folder (default /tmp/latxa-slurm)
#
# Everything (munge key and socket, slurm.conf, spool, state, logs) lives under $LATXA_SLURM_DIR;
# nothing under /etc is changed. Clients find the cluster through SLURM_CONF=$LATXA_SLURM_DIR/slurm.conf
# (the bridge's `local` profile sets it). Ports are picked free on first configuration and then kept.
set -euo pipefail

DIR="${LATXA_SLURM_DIR:-/tmp/latxa-slurm}"
CPUS="${LATXA_SLURM_CPUS:-8}"          # advertised CPUs: lets a few small test jobs run side by side on 2 cores
MEM_MB="${LATXA_SLURM_MEM_MB:-16000}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { echo "[slurm-up] $*"; }

# 1. Packages -----------------------------------------------------------------------------------------
need=()
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld slurmd slurm-client)
command -v munged >/dev/null 2>&1 || need+=(munge)
if ((${#need[@]})); then
  log "installing Debian packages: slurm-wlm munge"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
fi

mkdir -p "$DIR"/{munge,ctld,spool,log,run,jobs}
chmod 700 "$DIR/munge"
chmod 755 "$DIR"

# 2. munge ----------------------------------------------------------------------------------------------
SOCK="$DIR/munge/munge.socket.2"
if [ ! -s "$DIR/munge/munge.key" ]; then
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$DIR/munge/munge.key"
fi
munge_ok() { munge -n -S "$SOCK" 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1; }
if ! munge_ok; then
  rm -f "$SOCK" "$SOCK.lock"
  log "starting munged"
  munged --force --socket="$SOCK" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
  for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
  munge_ok || { echo "munged did not start; see $DIR/log/munged.log" >&2; exit 1; }
fi

# 3. slurm.conf (written once; ports chosen free then kept) ------------------------------------------
CONF="$DIR/slurm.conf"
free_port() {
  local py; py="$(command -v python3 || command -v python)"
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
if [ ! -s "$CONF" ]; then
  CTLD_PORT="$(free_port)"; SLURMD_PORT="$(free_port)"
  while [ "$SLURMD_PORT" = "$CTLD_PORT" ]; do SLURMD_PORT="$(free_port)"; done
  cat >"$CONF.tmp" <<EOF
# Written by slurm/local/up.sh: single-node Latxa test cluster on localhost.
ClusterName=latxa-local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
# Keep finished jobs visible to scontrol for 10 minutes; the bridge falls back to sacct -c after that.
MinJobAge=600
KillWait=5
OverTimeLimit=0
InactiveLimit=0
SchedulerParameters=sched_interval=2,bf_interval=2
MessageTimeout=20
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  mv "$CONF.tmp" "$CONF"
  log "wrote $CONF (slurmctld port $CTLD_PORT, slurmd port $SLURMD_PORT)"
fi
export SLURM_CONF="$CONF"

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# 4. daemons -------------------------------------------------------------------------------------------
if ! pid_alive "$DIR/run/slurmctld.pid"; then
  log "starting slurmctld"
  slurmctld -f "$CONF"
fi
if ! pid_alive "$DIR/run/slurmd.pid"; then
  log "starting slurmd"
  slurmd -f "$CONF" -N localhost
fi

# 5. wait until the node is idle (or mixed/allocated when jobs already run) --------------------------
state=""
for _ in $(seq 120); do
  state="$(sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -n1 || true)"
  case "$state" in
    idle|mixed|allocated|completing) log "node localhost is $state (SLURM_CONF=$CONF)"; exit 0 ;;
    down*|drain*|drained*) scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.25
done
echo "SLURM node did not become idle (state: '${state:-unknown}'); see $DIR/log/slurmctld.log and $DIR/log/slurmd.log" >&2
exit 1
