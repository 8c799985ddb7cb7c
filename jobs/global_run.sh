#!/usr/bin/env bash
#SBATCH --job-name=ciml-ter
#SBATCH --nodes=1
#SBATCH --ntasks=2
#SBATCH --time=04:00:00
#SBATCH --output=ciml-ter-%j.out
# Global TER prediction on a Slurm allocation: MPI ranks share the tiles (rank 0 hands them
# out), each rank on GPU (local rank mod GPUs per node) with --device cuda. Submit from the
# repository root:
#     sbatch jobs/global_run.sh CONFIG.toml            # paths come from the config's [paths]
#     sbatch --array=2001-2020 jobs/global_run.sh CONFIG.toml   # one task per year: {year}
#                                                    # in [paths] is the array task id
#     sbatch --nodes=4 --ntasks-per-node=4 --gpus-per-node=4 -p gpu jobs/global_run.sh CONFIG.toml
# A rerun of the same command resumes: finished tiles are kept, the rest is computed.
# Environment knobs:
#   CIML_TER       the ciml-ter executable (default: .venv/bin/ciml-ter under the submit dir)
#   CIML_LAUNCHER  mpirun (default) or srun;  CIML_SRUN_MPI  srun's --mpi plugin (default pmi2)
#   CIML_DEVICE    cpu or cuda (default: cuda when the job has GPUs, else cpu)
#   CIML_ARGS      extra arguments for `ciml-ter predict` (e.g. "--shap")
#   CIML_SMOKE=1   run only the MPI check `ciml-ter info --mpi` (no config needed)
set -euo pipefail

cd "${SLURM_SUBMIT_DIR:-$PWD}"
if [ -z "${CIML_TER:-}" ]; then
    if [ -x .venv/bin/ciml-ter ]; then CIML_TER="$PWD/.venv/bin/ciml-ter"; else CIML_TER="ciml-ter"; fi
fi
command -v "$CIML_TER" >/dev/null || { echo "global_run.sh: '$CIML_TER' not found; run 'make demo' or set CIML_TER" >&2; exit 2; }
ntasks="${SLURM_NTASKS:-1}"
export TERM=dumb  # plain job logs: Open MPI gives ranks a pty, which would turn on colours

if [ "${CIML_SMOKE:-0}" = 1 ]; then
    command=(info --mpi)
else
    config="${1:?usage: sbatch jobs/global_run.sh CONFIG.toml (or CIML_SMOKE=1 for the MPI check)}"
    [ -f "$config" ] || { echo "global_run.sh: config file '$config' not found" >&2; exit 2; }
    device="${CIML_DEVICE:-}"
    if [ -z "$device" ]; then
        if [ -n "${SLURM_GPUS_ON_NODE:-}${SLURM_JOB_GPUS:-}" ]; then device=cuda; else device=cpu; fi
    fi
    command=(predict --config "$config" --device "$device")
    [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && command+=(--year "$SLURM_ARRAY_TASK_ID")
    # shellcheck disable=SC2206
    command+=(${CIML_ARGS:-})
fi
echo "ciml-ter job ${SLURM_JOB_ID:-none} on $(hostname): $ntasks task(s), launcher ${CIML_LAUNCHER:-mpirun}: ${command[*]}"

case "${CIML_LAUNCHER:-mpirun}" in
    mpirun)
        export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
        export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
        mpirun -n "$ntasks" "$CIML_TER" "${command[@]}" ;;
    srun)
        srun --mpi="${CIML_SRUN_MPI:-pmi2}" -n "$ntasks" "$CIML_TER" "${command[@]}" ;;
    *)
        echo "global_run.sh: CIML_LAUNCHER must be mpirun or srun, found '$CIML_LAUNCHER'" >&2; exit 2 ;;
esac
echo "ciml-ter job finished"
