# Task runner. `make help` lists the targets. Everything runs inside .venv, created on first use.
PYTHON ?= python3
comma  := ,
VENV   ?= .venv
EXTRAS ?= serve,pipeline,retrain,tensorflow,dev
BIN    := $(abspath $(VENV))/bin
# The install stamp names pyproject.toml's content and the extras, not its mtime: a fresh checkout
# (every CI job) reuses a venv that matches instead of reinstalling it.
INSTALL_STAMP ?= $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)-$(subst $(comma),-,$(EXTRAS))
STAMP  := $(INSTALL_STAMP)

# DVC stages run `python -m mloop.<stage>`: put the venv first on PATH for them.
export PATH := $(BIN):$(PATH)
# The checkout's own code first, whichever checkout the venv's editable install points at.
export PYTHONPATH := $(CURDIR)/src:$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export TF_CPP_MIN_LOG_LEVEL := 3

.DEFAULT_GOAL := help
.PHONY: report ci-data ci-train ci-evaluate ci-report ci-export ci-commit-back ci-local ci-tools help install system-deps quickstart repro experiment serve secrets stack loop-demo dashboards bench metrics plots test test-fast lint format clean clean-all

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP) ## Create .venv and install the package with TensorFlow and dev tools

system-deps: ## Debian tools the tests use for real: Prometheus, Alertmanager, wrk, docker-compose (config check only), chromium (the page's browser test)
	@command -v promtool >/dev/null && command -v amtool >/dev/null && command -v wrk >/dev/null && command -v docker-compose >/dev/null && command -v chromium >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus prometheus-alertmanager wrk docker-compose chromium >/dev/null; \
	  else echo "install prometheus (promtool), prometheus-alertmanager, wrk and chromium with your package manager"; fi; }

quickstart: install repro ## Install, then run the whole pipeline and print the metrics

repro: $(STAMP) ## Run the DVC pipeline (ingest → promote); nothing changed = nothing runs
	dvc repro
	@python -m mloop.summary

# Tokens of the local service, made once, outside git (.secrets/ is ignored); MLOOP_*_TOKEN in the
# environment take precedence over these files.
SECRETS := .secrets

$(SECRETS)/%_token $(SECRETS)/%_password:
	@mkdir -p $(SECRETS) && chmod 700 $(SECRETS)
	@(umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(32))" > $@)
	@echo "made $@: send it as 'Authorization: Bearer ...' (kept out of git)"

stack: $(STAMP) system-deps ## The loop on 127.0.0.1: service :8000, retrainer :8090, Prometheus :9090, Alertmanager :9093 (Ctrl-C stops)
	$(BIN)/python -m stack --secrets-dir $(SECRETS)

loop-demo: $(STAMP) ## With `make stack` running: shifted traffic with labels, and the loop's timeline
	$(BIN)/python -m stack.demo --feedback-token-file $(SECRETS)/feedback_token

dashboards: $(STAMP) ## Regenerate monitoring/grafana/dashboards/*.json from dashboards/*.py
	$(BIN)/python -m dashboards

secrets: $(SECRETS)/admin_token $(SECRETS)/feedback_token $(SECRETS)/retrainer_token $(SECRETS)/grafana_admin_password ## The tokens docker compose mounts (.secrets/, git-ignored)
	@test -f $(SECRETS)/gitlab_trigger_token || (umask 077 && : > $(SECRETS)/gitlab_trigger_token)

serve: $(STAMP) $(SECRETS)/admin_token $(SECRETS)/feedback_token ## Serve the champion bundle on http://127.0.0.1:8000 (docs at /docs); tokens in .secrets/
	MLOOP_ADMIN_TOKEN_FILE=$(SECRETS)/admin_token MLOOP_FEEDBACK_TOKEN_FILE=$(SECRETS)/feedback_token \
	  python -m service --port 8000

bench: $(STAMP) system-deps ## Benchmarks: pipeline runtime, wine quality bars, model size, serving load (needs ../shared/data)
	python benchmarks/pipeline_runtime.py
	python benchmarks/wine_quality.py
	python benchmarks/model_size.py
	python benchmarks/serving.py --json-out benchmarks/results/serving.json

experiment: $(STAMP) ## Try params without changing params.yaml: make experiment SET="dataset=datasets/iris.yaml"
	@test -n "$(SET)" || { echo 'usage: make experiment SET="key=value [key=value ...]"'; exit 2; }
	dvc exp run --temp $(foreach setting,$(SET),-S $(setting))
	dvc exp show --no-pager --only-changed

metrics: $(STAMP) ## Show metrics, and their diff against the last commit
	dvc metrics diff --precision 4

# Only the plots this run wrote (regression and classification write different ones): DVC warns
# about every defined plot that has no file.
PLOT_TARGETS = $(wildcard reports/plots/predictions reports/plots/residuals reports/plots/confusion \
  reports/plots/roc reports/plots/importance) $(if $(wildcard reports/training/*.csv),reports/training)

plots: $(STAMP) ## Render the DVC plots to reports/plots-html/index.html (vega is loaded from a CDN)
	dvc plots show -o reports/plots-html $(PLOT_TARGETS)
	@echo "open reports/plots-html/index.html"

test: $(STAMP) system-deps ci-tools ## Run the whole test suite (unit, data, service, end to end, lint)
	$(BIN)/python -m pytest

test-fast: $(STAMP) ## Run the tests that do not run the whole pipeline
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP) ## black --check, flake8, mypy (strict on src/, service/, retrainer/), import-linter contracts
	$(BIN)/black --check .
	$(BIN)/flake8
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP) ## Reformat the code with black
	$(BIN)/black .

clean: ## Remove caches and pipeline outputs (keeps .venv, the MLflow store and the DVC cache)
	rm -rf .pytest_cache .mypy_cache reports/plots-html
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

clean-all: clean ## Also remove .venv, the MLflow store (mlflow.db, mlruns/) and the DVC cache
	rm -rf $(VENV) mlflow.db mlruns .dvc/cache

# ---- CI: what the .gitlab-ci.yml jobs run (docs/ci.md). Each job starts from a clean checkout plus the
# artifacts of the jobs it needs; DVC-tracked outputs travel through the DVC remote.
DVC_PULL_CHAMPION = dvc pull --quiet promote 2>/dev/null && echo "champion: pulled from the DVC remote" \
  || echo "champion: none pulled (a first run, or not in this DVC remote): the gate reads it from the MLflow registry"
REPORT_AGAINST ?= $(if $(CI_MERGE_REQUEST_TARGET_BRANCH_NAME),origin/$(CI_MERGE_REQUEST_TARGET_BRANCH_NAME))

report: $(STAMP) ## The merge-request model review of the last run: reports/mr/report.md (+ plots); AGAINST=rev to diff
	python -m mloop.report build $(if $(AGAINST),--against $(AGAINST))

ci-data: $(STAMP) ## CI data job: ingest + validate, drift against the champion, dvc push
	python -m mloop.ci remote
	@$(DVC_PULL_CHAMPION)
	dvc repro validate
	python -m mloop.report drift
	dvc push

ci-train: $(STAMP) ## CI train job: prepare + train on the data job's outputs (pulled, not re-run), dvc push
	python -m mloop.ci remote
	dvc pull --with-deps validate
	dvc repro train
	dvc push

ci-evaluate: $(STAMP) ## CI evaluate job: evaluate + the promotion gate (MLOOP_PROMOTE_DRY_RUN in MRs), dvc push
	python -m mloop.ci remote
	dvc pull --with-deps train
	dvc repro
	dvc push
	@python -m mloop.ci promoted > /dev/null && echo MLOOP_PROMOTED=true > reports/gate.env \
	  || echo MLOOP_PROMOTED=false > reports/gate.env; cat reports/gate.env

ci-report: $(STAMP) ## CI report job: the model review against the MR's target branch (fetched)
	@if [ -n "$(REPORT_AGAINST)" ]; then git fetch --quiet origin "$(CI_MERGE_REQUEST_TARGET_BRANCH_NAME)"; fi
	python -m mloop.report build $(if $(REPORT_AGAINST),--against $(REPORT_AGAINST))

ci-export: $(STAMP) ## CI retrain: the labelled production rows of MLOOP_PREDICTION_LOG_URL into data/feedback/
	@test -n "$$MLOOP_PREDICTION_LOG_URL" || { echo "MLOOP_PREDICTION_LOG_URL is not set: the retrain pipeline needs the prediction log (a masked CI variable)"; exit 2; }
	python -m mloop.ci remote
	@$(DVC_PULL_CHAMPION)
	python -m service.prediction_log export --db "$$MLOOP_PREDICTION_LOG_URL" --bundle models/champion \
	  --out data/feedback/production.parquet

ci-commit-back: $(STAMP) ## CI retrain: commit dvc.lock and the tracked reports to the branch, pushed with ci.skip
	python -m mloop.ci commit-back

# gitlab-ci-local (npm) runs .gitlab-ci.yml's jobs here with its shell executor (docs/ci.md).
GCL_VERSION := 4.73.0
GCL := $(CURDIR)/.tools/node_modules/.bin/gitlab-ci-local

ci-tools: ## gitlab-ci-local (pinned, npm, into .tools/) and rsync, for make ci-local
	@command -v rsync >/dev/null || { if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsync >/dev/null; \
	  else echo "install rsync with your package manager"; exit 1; fi; }
	@test -x $(GCL) && $(GCL) --version | grep -qx $(GCL_VERSION) || \
	  npm install --silent --no-audit --no-fund --prefix .tools gitlab-ci-local@$(GCL_VERSION)

ci-local: $(STAMP) ci-tools ## Run the pipeline's jobs locally (MR and trigger pipelines) in a throwaway clone
	$(BIN)/python -m ci_local --gitlab-ci-local $(GCL) --venv $(abspath $(VENV))
