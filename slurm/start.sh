#!/usr/bin/env bash
# Start a real single-node Slurm cluster (munged, slurmctld, slurmd) on this machine.
# Idempotent: daemons already running are left alone. Needs root and the Debian packages
# munge and slurm-wlm. Prints the line to export SLURM_CONF for the client commands.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/env.sh"

die() { echo "slurm/start.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (slurmctld/slurmd run as SlurmUser=root)"
for cmd in munged slurmctld slurmd sinfo; do
    command -v "$cmd" >/dev/null || die "'$cmd' not found: install the Debian packages munge and slurm-wlm"
done

mkdir -p "$CIML_SLURM_DIR"/{ctld,spool}
cpus="$(nproc)"
sed -e "s|@STATE@|$CIML_SLURM_DIR|g" -e "s|@CPUS@|$cpus|g" \
    -e "s|@CTLD_PORT@|$CIML_SLURM_CTLD_PORT|g" -e "s|@SLURMD_PORT@|$CIML_SLURM_SLURMD_PORT|g" \
    "$here/slurm.conf.in" > "$CIML_SLURM_CONF.new"
mv "$CIML_SLURM_CONF.new" "$CIML_SLURM_CONF"
export SLURM_CONF="$CIML_SLURM_CONF"

# munge: reuse a running daemon (ours or the system's), else start one.
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 600 /etc/munge/munge.key
    mkdir -p "$CIML_MUNGE_SOCKET_DIR" && chown munge:munge "$CIML_MUNGE_SOCKET_DIR" 2>/dev/null || true
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged --force --pid-file="$CIML_MUNGE_PIDFILE" || die "munged failed to start"
    else
        munged --force --pid-file="$CIML_MUNGE_PIDFILE" || die "munged failed to start"
    fi
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n </dev/null | unmunge >/dev/null || die "munge does not answer"
fi

pid_alive "$CIML_SLURM_DIR/slurmctld.pid" || slurmctld -f "$CIML_SLURM_CONF" \
    || die "slurmctld failed; see $CIML_SLURM_DIR/slurmctld.log"
pid_alive "$CIML_SLURM_DIR/slurmd.pid" || slurmd -f "$CIML_SLURM_CONF" \
    || die "slurmd failed; see $CIML_SLURM_DIR/slurmd.log"

# Readiness: the node must be up and idle (or already running jobs).
for _ in $(seq 120); do
    state="$(sinfo -h -N -o '%t' 2>/dev/null | head -n1 || true)"
    case "$state" in
        idle*|mix*|alloc*) echo "export SLURM_CONF=$CIML_SLURM_CONF"; exit 0 ;;
        down*|drain*) scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
done
die "node not ready after 60 s (state '${state:-none}'); see $CIML_SLURM_DIR/slurmctld.log and slurmd.log"
