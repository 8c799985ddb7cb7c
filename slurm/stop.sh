#!/usr/bin/env bash
# Stop the single-node Slurm cluster started by slurm/start.sh, by pid, and wait for exit.
# Idempotent: daemons that are not running are skipped. Leaves logs in CIML_SLURM_DIR.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/env.sh"

stop_pidfile() {
    local name="$1" pidfile="$2" pid
    pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { echo "stopped $name ($pid)"; rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    echo "killed $name ($pid) after 10 s"
    rm -f "$pidfile"
}

stop_pidfile slurmd "$CIML_SLURM_DIR/slurmd.pid"
stop_pidfile slurmctld "$CIML_SLURM_DIR/slurmctld.pid"
# Only the munged this project started (a system munged has no pid file here).
stop_pidfile munged "$CIML_MUNGE_PIDFILE"
