# crmhub: `make run` serves on SQLite with demo data; `make test` runs the suite.
# Both create .venv on first use, so a fresh machine needs only Python 3.11+.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PG_TEST_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

.PHONY: run test test-postgres lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "crmhub needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/crmhub migrate
	$(BIN)/crmhub seed-demo --if-empty
	$(BIN)/crmhub serve

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

# The database suites again, on a fresh database on the local PostgreSQL server.
test-postgres: $(STAMP)
	CRMHUB_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q -p no:cacheprovider -m db

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy hub channels routing

# Figures go into README.md by hand; nothing here asserts a speed.
bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/import_csv.py
	$(BIN)/python bench/sms_webhook.py
	$(BIN)/python bench/email_ingest.py
	$(BIN)/python bench/email_send.py

clean:
	rm -rf $(VENV) crmhub.db crmhub.db-wal crmhub.db-shm .pytest_cache .mypy_cache .ruff_cache
