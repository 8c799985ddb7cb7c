# Shared settings of the single-node test cluster; sourced by start.sh, stop.sh and status.sh.
# CIML_SLURM_DIR holds the generated config, state, logs and pid files.
CIML_SLURM_DIR="${CIML_SLURM_DIR:-${TMPDIR:-/tmp}/ciml-ter-slurm}"
CIML_SLURM_CTLD_PORT="${CIML_SLURM_CTLD_PORT:-6817}"
CIML_SLURM_SLURMD_PORT="${CIML_SLURM_SLURMD_PORT:-6818}"
CIML_SLURM_CONF="$CIML_SLURM_DIR/slurm.conf"
CIML_MUNGE_SOCKET_DIR="/run/munge"
CIML_MUNGE_PIDFILE="$CIML_MUNGE_SOCKET_DIR/ciml-ter-munged.pid"  # munged checks its pid dir is its own

# pid_alive PIDFILE: true when the pid file names a running process.
pid_alive() {
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
