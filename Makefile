# The two commands of the quick start (`make demo`, `make test`) and what they need.
# Every target runs `deps` first, so a fresh Debian machine needs nothing else.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.xpfdp-installed
BUILT := $(VENV)/.xpfdp-built
# What the compiled parts are built from: a change to any of them triggers `make build`.
BUILD_INPUTS := setup.py $(wildcard src/xpfdp/_fast/*.pyx src/xpfdp/_fast/*.pxd \
	src/xpfdp/_fast/*.pxi src/xpfdp/_fast/stages/*.pxi src/xpfdp/_fast/lib/*.pxd \
	src/xpfdp/_fast/includes/*.pxd src/xpfdp/_fast/includes/*.h bpf/*.c bpf/*.h src/xpfdp/_*_build.py)
WHEELHOUSE := dist
WHEEL_STAMP := $(WHEELHOUSE)/.xpfdp-wheel

.PHONY: deps build wheel test demo bench bench-compare bench-e2e lint clean fuzz

deps: $(STAMP) build

$(STAMP): pyproject.toml setup.py scripts/install-deps.sh
	@scripts/install-deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip "setuptools>=77" wheel "Cython>=3.0.10" "numpy>=1.26" \
		"cffi>=1.16"
	@$(PIP) install --no-build-isolation -e '.[test,plot,metrics,dev]'
	@touch $@ $(BUILT)

# Editable install: Cython regenerates only the C that changed, and an extension whose module
# is newer than its sources is reused (setup.py), so this is quick and quiet when little did.
build: $(STAMP) $(BUILT)

$(BUILT): $(BUILD_INPUTS)
	@scripts/install-deps.sh
	@$(PIP) install --no-build-isolation --no-deps -e .
	@touch $@

# A manylinux wheel in dist/ with libxdp, libbpf and libelf vendored (auditwheel repair):
# installs with pip on a machine without the -dev packages or a compiler.
wheel: $(WHEEL_STAMP)

$(WHEEL_STAMP): $(STAMP) $(BUILD_INPUTS) pyproject.toml README.md LICENSE MANIFEST.in \
		$(shell find src/xpfdp -name '*.py' -o -name '*.pyi') scripts/build-wheel.sh
	@scripts/build-wheel.sh $(PY) $(WHEELHOUSE) >/dev/null
	@touch $@

# The slow tests (fresh-venv wheel install) run here, after `wheel`; plain pytest skips them.
test: deps wheel
	$(PY) -m pytest tests -m ""

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
	rm -rf build dist fuzz-out $(VENV) src/xpfdp/_fast/*.c src/xpfdp/_fast/*.so src/xpfdp/bpf/*.o \
		src/*.egg-info src/xpfdp/_*_cffi*.so src/xpfdp/_*_cffi*.c
