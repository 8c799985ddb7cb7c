# Two commands for a new user:  make demo  |  make test   (see README.md)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/python -m pytest
MPI_RANKS ?= 2
MPI_TIMEOUT ?= 900
TEST_WORKERS ?= 2
APT_PACKAGES := openmpi-bin libopenmpi-dev slurm-wlm munge chromium

# OpenMPI refuses root and more ranks than cores unless told; CI runs as root on 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1

.PHONY: install demo test test-cudasim test-mpi test-slurm test-wheel test-main system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.demo-installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

# mpi4py is built from source so that it links the system's Open MPI (libopenmpi-dev).
$(VENV)/.test-installed: setup.cfg pyproject.toml | system-deps $(BIN)/python
	PIP_NO_BINARY=mpi4py $(BIN)/python -m pip install -q -e '.[test,mpi]'
	touch $@ $(VENV)/.demo-installed

# ciml-ter in .venv (what `make demo` runs); `source .venv/bin/activate` puts it on the PATH.
install: $(VENV)/.demo-installed
	@echo "ciml-ter installed in $(VENV): $(BIN)/ciml-ter; 'source $(BIN)/activate' puts it on your PATH"

demo: $(VENV)/.demo-installed
	$(BIN)/ciml-ter demo

system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "make test needs the Debian packages$$missing: run it as root, or 'sudo apt-get install$$missing'"; \
	    exit 1; \
	  fi; \
	fi

# The whole suite: CUDA-simulator kernels, MPI on $(MPI_RANKS) ranks, a real Slurm job, the
# installed wheel, the rest.
test: $(VENV)/.test-installed
	$(MAKE) --no-print-directory test-cudasim test-mpi test-slurm test-main

test-cudasim: $(VENV)/.test-installed
	NUMBA_ENABLE_CUDASIM=1 $(PYTEST) -m cudasim

test-mpi: $(VENV)/.test-installed
	timeout -k 10 $(MPI_TIMEOUT) mpirun -n $(MPI_RANKS) $(BIN)/python -m pytest -m mpi -p no:cacheprovider --color=no

test-slurm: $(VENV)/.test-installed
	$(PYTEST) -m slurm

# sdist + wheel (python -m build), the wheel installed into a fresh venv outside the source tree,
# and version, info, synth, sites, a 3-fold x 1-seed train run from it (tests/test_wheel.py).
test-wheel: $(VENV)/.test-installed
	$(PYTEST) tests/test_wheel.py

# The rest, the wheel check among it, on $(TEST_WORKERS) pytest-xdist workers; a test module stays
# on one worker (its module fixtures are built once), the slowest modules start first.
test-main: $(VENV)/.test-installed
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile -m "not cudasim and not mpi and not slurm"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-out
