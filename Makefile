PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Tests never read .env: they get their own settings, so a developer's .env cannot change them.
TEST_ENV := OPSION_READ_DOTENV=0 DEBUG=0 HTTPS=0 STATIC_MANIFEST=0 SECRET_KEY=test-secret-key-not-for-production \
	FIELD_ENCRYPTION_KEYS=b3BzaW9uLXRlc3Qtb25seS1mZXJuZXQta2V5LTAwMDE= ANTHROPIC_API_KEY= REDIS_URL=
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
REQUIRE_POSTGRES ?= 0

.PHONY: install lock run test test-sqlite test-postgres lint format browser-deps bench loadtest clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# constraints.txt pins every package to the version CI tested; `make lock` re-resolves it from pyproject.toml.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lock:
	@./scripts/lock

.env:
	@echo "Writing a development .env with a random SECRET_KEY and FIELD_ENCRYPTION_KEYS; e-mails (password resets) print in this terminal"
	@$(BIN)/python -c "import secrets; from cryptography.fernet import Fernet; \
	print('DEBUG=1'); print('HTTPS=0'); print('SECRET_KEY=' + secrets.token_urlsafe(50)); \
	print('FIELD_ENCRYPTION_KEYS=' + Fernet.generate_key().decode()); print('ANTHROPIC_API_KEY='); \
	print('EMAIL_URL=consolemail://')" > .env

run: install .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo "Serving on http://127.0.0.1:8000  (set ANTHROPIC_API_KEY in .env for platform-key queries)"
	$(BIN)/python manage.py runserver 127.0.0.1:8000

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

browser-deps:
	@./scripts/ensure-chromium

test: lint browser-deps test-sqlite test-postgres

test-sqlite: install
	$(TEST_ENV) $(BIN)/python manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(BIN)/pytest -p no:cacheprovider

test-postgres: install
	@if $(BIN)/python scripts/pg_reachable.py "$(TEST_DATABASE_URL)"; then \
		echo "== PostgreSQL pass on $(TEST_DATABASE_URL)"; \
		$(TEST_ENV) DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest -p no:cacheprovider; \
	elif [ "$(REQUIRE_POSTGRES)" = "1" ]; then \
		echo "!! PostgreSQL at $(TEST_DATABASE_URL) is unreachable and REQUIRE_POSTGRES=1: failing."; exit 1; \
	else \
		echo "!!!!!!!! PostgreSQL at $(TEST_DATABASE_URL) is UNREACHABLE: the PostgreSQL pass was SKIPPED !!!!!!!!"; \
	fi

# Recreates and finally drops this database: never point it at one you care about.
LOADTEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/opsion_loadtest

loadtest: install
	$(BIN)/python scripts/loadtest/run.py --database-url $(LOADTEST_DATABASE_URL)

# Benchmarks (not tests): PostgreSQL and SQLite, about 5 minutes; prints a table, writes docs/benchmarks.md.
# BENCH_DATABASE_URL is dropped and re-created on every run: never point it at one you care about.
# BENCH_ARGS=--quick shrinks every section to seconds (report in artifacts/), for work on the harness.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/opsion_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/15
BENCH_ARGS ?=

bench: install
	$(TEST_ENV) REDIS_URL=$(BENCH_REDIS_URL) LOG_LEVEL=WARNING \
		$(BIN)/python -m bench --postgres-url $(BENCH_DATABASE_URL) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles artifacts .pytest_cache
