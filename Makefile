# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
# `make docs` builds the documentation site into build/site (mkdocs build --strict); the
# docs extra is installed with the others, so CI's `make test` builds the site too.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.equigraph-installed
EXTRAS ?= test,chem,docs

.PHONY: demo test docs install clean-venv

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

# Warnings (a broken link, a docstring that does not parse) fail the build, as in CI.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

clean-venv:
	rm -rf $(VENV)
