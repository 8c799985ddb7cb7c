#!/usr/bin/env bash
#SBATCH --job-name=ciml-ter
#SBATCH --nodes=1
#SBATCH --ntasks=2
#SBATCH --time=00:30:00
#SBATCH --output=ciml-ter-%j.out
# ciml-ter on a Slurm allocation. Submit from the repository root:
#     sbatch jobs/global_run.sh
# For now it runs the engine's MPI smoke check (`ciml-ter info --mpi`: every rank reports,
# rank 0 gathers); the global predict run replaces it when that stage lands.
# Environment knobs:
#   CIML_TER        the ciml-ter executable (default: .venv/bin/ciml-ter under the submit dir,
#                   else ciml-ter on PATH)
#   CIML_LAUNCHER   mpirun (default) or srun
#   CIML_SRUN_MPI   the --mpi plugin for srun (default pmi2)
set -euo pipefail

cd "${SLURM_SUBMIT_DIR:-$PWD}"
if [ -z "${CIML_TER:-}" ]; then
    if [ -x .venv/bin/ciml-ter ]; then CIML_TER="$PWD/.venv/bin/ciml-ter"; else CIML_TER="ciml-ter"; fi
fi
command -v "$CIML_TER" >/dev/null || { echo "global_run.sh: '$CIML_TER' not found; run 'make demo' or set CIML_TER" >&2; exit 2; }
ntasks="${SLURM_NTASKS:-1}"
export TERM=dumb  # plain job logs: Open MPI gives ranks a pty, which would turn on colours
echo "ciml-ter job ${SLURM_JOB_ID:-none} on $(hostname): $ntasks task(s), launcher ${CIML_LAUNCHER:-mpirun}"

case "${CIML_LAUNCHER:-mpirun}" in
    mpirun)
        export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
        export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
        mpirun -n "$ntasks" "$CIML_TER" info --mpi ;;
    srun)
        srun --mpi="${CIML_SRUN_MPI:-pmi2}" -n "$ntasks" "$CIML_TER" info --mpi ;;
    *)
        echo "global_run.sh: CIML_LAUNCHER must be mpirun or srun, found '$CIML_LAUNCHER'" >&2; exit 2 ;;
esac
echo "ciml-ter job finished"
