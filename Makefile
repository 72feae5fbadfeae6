# The README's two commands:  `make lab`  (set up, then run the lab)  and  `make test`.
# tools/install.py does the setting up: Debian packages (as root), .venv, the locked Python
# packages (requirements/*.lock, with PyTorch's CPU-only build where there is no NVIDIA GPU), labbook.
VENV ?= .venv
PYTHON ?= python3

.PHONY: setup lab test bench translations lock clean

setup: $(VENV)/.lab-installed

$(VENV)/.lab-installed: pyproject.toml requirements/lab.lock requirements/lab-cpu.lock tools/install.py
	@$(PYTHON) tools/install.py lab --venv $(VENV)
	@touch $@

$(VENV)/.test-installed: $(VENV)/.lab-installed requirements/test.lock requirements/test-cpu.lock
	@$(PYTHON) tools/install.py test --venv $(VENV)
	@touch $@

lab: setup
	$(VENV)/bin/labbook build
	$(VENV)/bin/labbook site runs --out site

# One pytest worker per core, each taking whole test files: a file's fixtures are made once, and
# the small run most files share is made once for all (tests/conftest.py). `.venv/bin/python -m
# pytest` alone runs the suite in one process.
test: $(VENV)/.test-installed
	$(VENV)/bin/python -m pytest -n auto --dist loadfile

bench: setup
	$(VENV)/bin/python bench/train_speed.py

# After changing text in labbook/templates/ or labbook/: new messages appear untranslated in the
# Chinese catalog, changed ones fuzzy, removed ones obsolete (tests fail until each is settled).
translations: setup
	$(VENV)/bin/pybabel extract -F labbook/locale/babel.cfg -o labbook/locale/messages.pot --no-location --omit-header .
	$(VENV)/bin/pybabel update -i labbook/locale/messages.pot -d labbook/locale -l zh_CN --no-wrap

# Resolve every lock in requirements/ again (newest releases that fit pyproject.toml and pins.in).
lock: setup
	@$(VENV)/bin/pip install -q --require-hashes --no-deps -r requirements/tools.lock
	$(VENV)/bin/python tools/lock.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
