# Everything the project needs, from nothing: `make install` builds .venv; demo and test depend on it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast clean browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	@# decord 0.6.0 and decord2 both install the package `decord`: a venv that had 0.6.0 drops it first
	@# and reinstalls decord2's files over what the uninstall removed (docs/decoders.md)
	if $(PY) -m pip show -q decord >/dev/null 2>&1; then $(PY) -m pip uninstall -y -q decord && \
		$(PY) -m pip install -q --force-reinstall --no-deps decord2==3.4.0; fi
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -c "import torch, torchvision, ray, decord, open_clip, av; print('installed: torch', torch.__version__, '| ray', ray.__version__, '| decord', decord.__version__, '| open_clip', open_clip.__version__)"
	touch $(STAMP)

demo: install
	$(VENV)/bin/raytrain demo --config configs/demo.yaml

# headless Chromium for tests/test_search_serve.py's browser test (skipped without it): Debian's
# package, installed only where apt-get can (root and Debian's mirror); never fails the build
browser:
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -q chromium >/dev/null; } || \
		echo "chromium not installed: the browser test will skip"

test: install
	$(PY) -m pytest -q -ra --durations=30

test-fast: install
	$(PY) -m pytest -q -m "not ray and not e2e"

clean:
	rm -rf $(VENV) runs .pytest_cache
