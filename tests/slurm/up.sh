#!/usr/bin/env bash
# Bring up a throw-away single-node SLURM on this machine (Debian/Ubuntu, slurm >= 22.05),
# without systemd: munged, `slurmctld -c -i` and slurmd are started by hand and their PIDs
# are written to $SLURM_STATE_DIR/{munged,slurmctld,slurmd}.pid, so that down.sh stops
# exactly those processes (after cancelling jobs left on this cluster) and nothing else.
#
#   bash tests/slurm/up.sh            # needs root; installs slurm + munge if missing
#   FAKE_GPUS=1 bash tests/slurm/up.sh  # also advertise one fake "gpu" GRES (/dev/null)
#   bash tests/slurm/down.sh
#
# Idempotent enough for tests: calling it while a cluster started by it is still up
# restarts that cluster (down.sh first). It refuses to start next to slurm daemons it
# did not start, saves a slurm.conf it did not write (down.sh restores it), and reuses a
# munged that is already running (not recorded, so down.sh leaves it alone).
# Partition: "debug" (default). Node: $(hostname -s), all CPUs, RAM minus 1 GiB.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
D=${SLURM_STATE_DIR:-/tmp/featureaudit-slurm}
MARK="# written by featureaudit tests/slurm/up.sh"
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
CPUS=$(nproc)
FAKE_GPUS=${FAKE_GPUS:-0}
MEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))

die() { echo "up.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"

# A cluster we started earlier and never stopped: stop it first.
SLURM_STATE_DIR=$D bash "$HERE/down.sh" >/dev/null 2>&1 || true
mkdir -p "$D"


if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "slurm is not installed and apt-get is not available"
  echo "up.sh: installing slurm-wlm and munge (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurmctld slurmd slurm-client munge >/dev/null
fi

# Refuse to run next to slurm daemons we did not start (a real cluster, or another test).
for d in slurmctld slurmd; do
  if pid=$(pgrep -x "$d"); then
    die "a $d not started by this script is running (pid $pid); stop it first"
  fi
done
# Keep a slurm.conf we did not write; down.sh puts it back.
if [ -s "$CONF" ] && ! grep -qF "$MARK" "$CONF" && [ ! -e "$D/slurm.conf.orig" ]; then
  cp -p "$CONF" "$D/slurm.conf.orig"
fi

# --- munge ---
[ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null \
  || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "up.sh: reusing the munged that is already running (not recorded, left running by down.sh)"
else
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  for i in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$D/munged.pid"
fi
munge -n | unmunge | grep -q 'STATUS: *Success' || die "munge does not work"

# --- slurm ---
install -d -o slurm -g slurm /var/spool/slurmctld /var/log/slurm
install -d /var/spool/slurmd /run/slurm /etc/slurm
GRES_TYPES=""; NODE_GRES=""
if [ "$FAKE_GPUS" -gt 0 ]; then GRES_TYPES="GresTypes=gpu"; NODE_GRES="Gres=gpu:${FAKE_GPUS}"; fi
cat > "$CONF" <<CONFEOF
$MARK
ClusterName=local
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# keep finished jobs visible to squeue --states=all (the Snakemake status command and the
# test's own COMPLETED check) for the test cluster's whole life (a day). 10 minutes was a race:
# the stand-in's first job finishes early and is checked only when the real workflow's two runs
# are done (12 min in one CI run). (0, "never purge" in slurm.conf(5), is refused by 22.05:
# "MinJobAge must be at least 2", and then finished jobs vanish at once.)
MinJobAge=86400
# schedule quickly: these are short test jobs
SchedulerParameters=sched_interval=2,bf_interval=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$GRES_TYPES
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} $NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONFEOF
if [ "$FAKE_GPUS" -gt 0 ]; then
  echo "NodeName=${NODE} Name=gpu File=/dev/null" > /etc/slurm/gres.conf
else
  rm -f /etc/slurm/gres.conf
fi
rm -f /run/slurm/slurmctld.pid /run/slurm/slurmd.pid
# -c: start without saved state, so jobs queued by an earlier (aborted) run never come back;
# -i: ignore errors in state files.
/usr/sbin/slurmctld -c -i
for i in $(seq 50); do [ -s /run/slurm/slurmctld.pid ] && break; sleep 0.1; done
cp /run/slurm/slurmctld.pid "$D/slurmctld.pid"
/usr/sbin/slurmd
for i in $(seq 50); do [ -s /run/slurm/slurmd.pid ] && break; sleep 0.1; done
cp /run/slurm/slurmd.pid "$D/slurmd.pid"
ok=0
for i in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qx idle; then ok=1; break; fi
  scontrol update NodeName="${NODE}" State=RESUME >/dev/null 2>&1 || true
  sleep 0.5
done
[ "$ok" -eq 1 ] || { sinfo >&2 || true; tail -n 20 /var/log/slurm/slurmctld.log >&2 || true; die "node did not become idle"; }
sinfo
