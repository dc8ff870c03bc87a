# The two commands of the quick start: `make run` and `make test`. Everything else is here for them.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := 1
# CDK context overrides for synth and what runs on it, as the CDK CLI takes them: make up CDK_CONTEXT="-c batchSize=200"
CDK_CONTEXT ?=
MODEL := model/artifacts/model.tar.gz
TORCH_MODEL := model/artifacts/pytorch/model.tar.gz

.PHONY: run up test test-fast lint typecheck synth model deploy localstack-deploy bench mutate clean help browser constraints

help:
	@echo "make run    - local cloud + deploy + demo workload + report (no Docker, no AWS account)"
	@echo "             CDK_CONTEXT=\"-c batchSize=200\" overrides cdk.json for run, up, synth and bench"
	@echo "make test   - lint, typecheck, then the whole test suite (what CI runs)"
	@echo "make test-fast - unit, infra and local cloud tests without the slow, network and e2e ones"
	@echo "make lint   - ruff check of functions/, infra/, localcloud/ (rules in pyproject.toml)"
	@echo "make typecheck - mypy on functions/, infra/, localcloud/ (settings in pyproject.toml)"
	@echo "make up     - serve the HTTP API on http://127.0.0.1:8000 and the live dashboard until Ctrl-C"
	@echo "make synth  - synthesize the CDK app into cdk.out (cdk-nag checks run on every synth)"
	@echo "make model  - train the XGBoost model into $(MODEL) and the PyTorch model into $(TORCH_MODEL)"
	@echo "make deploy - cdk deploy to your AWS account (needs credentials and Docker for the ML image)"
	@echo "make localstack-deploy - cdklocal deploy into LocalStack (docker compose up -d first)"
	@echo "make mutate - mutation testing of functions/pipeline and the ASL (slow; not in CI): MODULES=\"events costs\""
	@echo "make constraints - re-pin every transitive dependency into constraints.txt after changing requirements*.txt"

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	@touch $@

# constraints.txt pins every transitive dependency to the versions the suite last passed with (requirements*.txt
# pin only the direct ones). Re-pin after changing a requirement: `make constraints`, run `make test`, commit both.
# torch stays out: its wheel differs by platform and index (CPU build or CUDA), requirements-dev.txt pins it.
CONSTRAINTS_SKIP := ^(torch|nvidia-|triton|pip|setuptools)==|@
constraints: $(VENV)/.installed
	@{ echo "# Transitive pins for requirements-dev.txt (make constraints; see the Makefile)"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -E '$(CONSTRAINTS_SKIP)'; } > constraints.txt
	@echo "constraints.txt: $$(grep -c '==' constraints.txt) pins"

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The dashboard's browser test (tests/e2e/test_dashboard.py) drives a headless Chromium through chromedriver.
# Installed here with apt-get where that works (root on Debian/Ubuntu); otherwise `make test` stops and says what
# to install (the test itself fails, never skips, without them).
BROWSER_HINT := install Chromium and its WebDriver: Debian \`apt-get install -y chromium chromium-driver\`, Ubuntu \`apt-get install -y chromium-browser chromium-chromedriver\`, macOS \`brew install --cask chromium chromedriver\`
browser:
	@if command -v chromedriver >/dev/null && { command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing the browser for the dashboard test: apt-get install chromium chromium-driver ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
			|| { echo "apt-get could not install chromium chromium-driver: $(BROWSER_HINT)"; exit 1; }; \
	else \
		echo "make test needs a headless browser for tests/e2e/test_dashboard.py: $(BROWSER_HINT)"; exit 1; \
	fi

# On a fresh clone both are missing: one train.py run builds both from one synthetic dataset (generating it is
# most of the time), and the PyTorch rule then finds its model up to date. ($(,) is a comma inside $(if ...).)
, := ,
$(MODEL): $(VENV)/.installed model/train.py model/synthetic.py functions/pipeline/features.py functions/pipeline/drift.py
	$(PY) model/train.py --kinds $(if $(wildcard $(TORCH_MODEL)),xgboost,xgboost$(,)pytorch)

$(TORCH_MODEL): $(VENV)/.installed model/train.py model/train_pytorch.py model/code/inference.py model/synthetic.py functions/pipeline/features.py functions/pipeline/drift.py
	$(PY) model/train.py --kinds pytorch

model: $(MODEL) $(TORCH_MODEL)

synth: $(VENV)/.installed $(MODEL) $(TORCH_MODEL)
	@echo "synthesizing the CDK app (cdk-nag AwsSolutions checks included) ..."
	@$(PY) app.py $(CDK_CONTEXT)

run: synth
	$(PY) scripts/demo.py --context "$(CDK_CONTEXT)"

up: synth
	$(PY) -m localcloud up --cdk-out cdk.out --api-port 8000 --context "$(CDK_CONTEXT)"

# Lint and type checks gate the tests (CI runs `make test`); both take seconds (mypy's first run, with no
# .mypy_cache, takes minutes: it reads the CDK's and the other libraries' types once).
CHECKED := functions infra localcloud
lint: $(VENV)/.installed
	$(PY) -m ruff check $(CHECKED)

typecheck: $(VENV)/.installed
	$(PY) -m mypy $(CHECKED)

# --durations: the slowest tests in every run's output (CI's too), to keep the suite well under 10 minutes.
# TEST_WORKERS pytest-xdist processes share the tests out (each has its own moto state); the end-to-end tests
# stay together on one of them (tests/conftest.py). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
test: lint typecheck $(VENV)/.installed node_modules/.installed browser $(MODEL) $(TORCH_MODEL)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15

# Everything but the end-to-end deploys, the slow fault matrix and the tests that need the package index.
test-fast: $(VENV)/.installed node_modules/.installed $(MODEL) $(TORCH_MODEL)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup tests/unit tests/infra tests/localcloud -m "not slow and not network"

bench: synth
	CDK_CONTEXT="$(CDK_CONTEXT)" $(PY) -m bench

# Mutation testing (mutmut, one module at a time, one worker): slow, so not part of `make test` or CI.
mutate: $(VENV)/.installed
	$(PY) scripts/mutate.py $(MODULES)

deploy: synth node_modules/.installed
	npx --no-install cdk deploy --require-approval broadening

localstack-deploy: synth node_modules/.installed
	npx --no-install cdklocal bootstrap
	npx --no-install cdklocal deploy --require-approval never

clean:
	rm -rf cdk.out .localcloud .pytest_cache .mutation .mypy_cache .ruff_cache
