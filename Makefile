# The README's two commands:  `make lab`  (set up, then run the lab)  and  `make test`.
VENV ?= .venv
PYTHON ?= python3
# Debian packages needed on a fresh machine, installed when make runs as root:
# venv support; a font with Chinese glyphs for figures and reports; HarfBuzz's
# subsetter, which WeasyPrint uses to embed fonts quickly; poppler-utils
# (pdftotext, pdffonts), which the tests use to read the PDFs back; chromium,
# the browser the site's tests drive through Playwright.
SYSTEM_PACKAGES := python3-venv fonts-noto-cjk libharfbuzz-subset0 poppler-utils chromium

.PHONY: setup lab test bench translations clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi; fi
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test,ray]'
	touch $@

lab: setup
	$(VENV)/bin/labbook build
	$(VENV)/bin/labbook site runs --out site

test: setup
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/python bench/train_speed.py

# After changing text in templates/ or labbook/: new messages appear untranslated in the
# Chinese catalog, changed ones fuzzy, removed ones obsolete (tests fail until each is settled).
translations: setup
	$(VENV)/bin/pybabel extract -F labbook/locale/babel.cfg -o labbook/locale/messages.pot --no-location --omit-header .
	$(VENV)/bin/pybabel update -i labbook/locale/messages.pot -d labbook/locale -l zh_CN --no-wrap

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
