#!/usr/bin/env bash
# Stop the daemons started by up.sh -- by the PIDs it recorded in $SLURM_STATE_DIR, and
# nothing else -- and remove the slurm.conf it wrote (putting back one it replaced).
# Safe to call twice, or after up.sh failed half-way. Packages stay installed.
#
# Why remove slurm.conf: with SLURM installed, configured and not running, every
# `snakemake` call (even a local one) waits ~10 s, because the slurm executor plugin runs
# `scontrol show config` when it is imported; without a slurm.conf that fails at once.
D=${SLURM_STATE_DIR:-/tmp/featureaudit-slurm}
MARK="# written by featureaudit tests/slurm/up.sh"
ours() { [ -s "$D/$1.pid" ] && [ "$(cat /proc/"$(cat "$D/$1.pid")"/comm 2>/dev/null)" = "$1" ]; }
# Jobs still queued or running on our cluster (a test that failed or was interrupted):
# cancel them first, so that slurmd ends their job steps -- stopping slurmd alone would
# leave orphaned slurmstepd processes and their jobs running.
if ours slurmctld; then
  ids=$(squeue -h -t PD,R,S,CG,CF -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${ids// }" ]; then
    scancel $ids 2>/dev/null
    for i in $(seq 60); do
      [ -z "$(squeue -h -t PD,R,S,CG,CF -o %i 2>/dev/null)" ] && break; sleep 0.5
    done
    echo "cancelled jobs $ids"
  fi
fi
for n in slurmd slurmctld munged; do
  f=$D/$n.pid
  [ -s "$f" ] || { rm -f "$f"; continue; }
  pid=$(cat "$f")
  # only if that PID is still the daemon we started (not a reused PID)
  if ours "$n" && kill "$pid" 2>/dev/null; then
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    echo "stopped $n pid $pid"
  fi
  rm -f "$f"
done
if [ -f /etc/slurm/slurm.conf ] && grep -qF "$MARK" /etc/slurm/slurm.conf; then
  rm -f /etc/slurm/slurm.conf
  grep -qF "Name=gpu File=/dev/null" /etc/slurm/gres.conf 2>/dev/null && rm -f /etc/slurm/gres.conf
fi
if [ -e "$D/slurm.conf.orig" ]; then
  cp -p "$D/slurm.conf.orig" /etc/slurm/slurm.conf && rm -f "$D/slurm.conf.orig"
fi
exit 0
