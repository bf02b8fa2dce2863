# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.equigraph-installed
EXTRAS ?= test,chem

.PHONY: demo test install clean-venv

install: $(STAMP)

# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
# A torch already present in the venv (a user's own build) is left as it is.
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --doctest-modules equigraph tests

clean-venv:
	rm -rf $(VENV)
