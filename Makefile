# The two commands of the quick start (`make demo`, `make test`) and what they need.
# Every target runs `deps` first, so a fresh Debian machine needs nothing else.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xpfdp-installed

.PHONY: deps build test demo bench bench-compare bench-e2e lint clean fuzz

deps: $(STAMP) build

$(STAMP): pyproject.toml setup.py scripts/install-deps.sh
	@scripts/install-deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip "setuptools>=77" wheel \
		"Cython>=3.0.10" "numpy>=1.26" "cffi>=1.16"
	@$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation -e '.[test,plot,metrics,dev]'
	@touch $@

# Rebuilds only what changed (.pyx, bpf/*.bpf.c); quiet when nothing did.
build: $(STAMP)
	@scripts/install-deps.sh
	@$(PY) setup.py -q build_ext --inplace >/dev/null

test: deps
	$(PY) -m pytest tests

# The NAT firewall between client and server namespaces, real traffic, then the report.
demo: deps
	$(PY) -m xpfdp demo --out-dir demo-out

BENCH_ARGS := --benchmark-only --benchmark-columns=min,median,mean,ops --benchmark-sort=name
# A median slower than the saved baseline by more than this fails `make bench-compare`.
BENCH_TOLERANCE ?= 25%

# Every run is saved as pytest-benchmark JSON under .benchmarks/ (the baseline for bench-compare).
bench: deps
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest benches $(BENCH_ARGS) --benchmark-autosave

# Runs every suite again and compares it with the latest saved run, without saving this one.
bench-compare: deps
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest benches $(BENCH_ARGS) --benchmark-compare \
		--benchmark-compare-fail=median:$(BENCH_TOLERANCE)

# End to end on veth: the C reference (benches/c) and xpfdp in the same run, paired rounds.
bench-e2e: deps
	$(PY) benches/e2e_veth.py --duration 4 --rounds 5 --cpu 1 --sender-cpu 0

# Random frames and random metadata through every kernel and a pipeline, in child processes;
# a crash or a leaked frame fails it and keeps the input (see scripts/fuzz.py).
FUZZ_SECONDS ?= 60
fuzz: deps
	$(PY) scripts/fuzz.py --seconds $(FUZZ_SECONDS) --out fuzz-out

lint: deps
	$(VENV)/bin/ruff check src tests benches examples
	$(VENV)/bin/ruff format --check src tests benches examples

clean:
	rm -rf build fuzz-out $(VENV) src/xpfdp/_fast/*.c src/xpfdp/_fast/*.so src/xpfdp/bpf/*.o \
		src/*.egg-info src/xpfdp/_*_cffi*.so src/xpfdp/_*_cffi*.c
