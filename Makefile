# Two commands set everything up: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXTRAS := test,triton,onnx,openfold,relax
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Checkpoints to serve: WEIGHTS="esm2_t6_8M_UR50D=/path/esm2_t6_8M_UR50D.pt other=/path" (or BIONEMO_LITE_WEIGHTS).
WEIGHTS ?=
PYTEST_ARGS ?=

.PHONY: install serve test lock clean

$(STAMP): pyproject.toml requirements.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU build on local disk; a range would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# requirements.txt holds the exact versions CI resolved, so a clone next month installs the same.
	$(PY) -m pip install -q -c requirements.txt -e ".[$(EXTRAS)]"
	# The playground's browser tests drive Debian's chromium (Playwright's own browser download is unreachable).
	command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }; }
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(VENV)/bin/bionemo-lite serve --host $(HOST) --port $(PORT) $(foreach w,$(WEIGHTS),--weights $(w))

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Re-resolve every dependency from pyproject.toml in a scratch venv; write the versions to requirements.txt and pylock.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q torch==2.13.0
	.lock-venv/bin/python -m pip install -q -e ".[$(EXTRAS)]"
	{ sed -n '1,2p' requirements.txt; .lock-venv/bin/python -m pip freeze --exclude-editable \
	    | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/'; } > requirements.txt.new
	mv requirements.txt.new requirements.txt
	# The same versions as a PEP 751 lock, with every wheel's sha256 (pip >= 25.1 writes it).
	.lock-venv/bin/python -m pip install -q "pip>=25.1"
	.lock-venv/bin/python -m pip lock -q -c requirements.txt ".[$(EXTRAS)]" -o pylock.toml
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .lock-venv .pytest_cache build *.egg-info
