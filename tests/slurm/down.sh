#!/usr/bin/env bash
# Stop the daemons started by up.sh, by the PIDs it recorded in $SLURM_STATE_DIR,
# and nothing else. Safe to call twice, or when up.sh failed half-way.
# Does not uninstall packages; /etc/slurm/slurm.conf (written by up.sh) stays.
D=${SLURM_STATE_DIR:-/tmp/featureaudit-slurm}
for n in slurmd slurmctld munged; do
  f=$D/$n.pid
  [ -s "$f" ] || { rm -f "$f"; continue; }
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    echo "stopped $n pid $pid"
  fi
  rm -f "$f"
done
# put back a slurm.conf that up.sh replaced
if [ -e "$D/slurm.conf.orig" ]; then
  cp -p "$D/slurm.conf.orig" /etc/slurm/slurm.conf && rm -f "$D/slurm.conf.orig"
fi
exit 0
