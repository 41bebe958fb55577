# jobmatch front door: `make up` runs the local stack, `make test` runs every check.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) infra/local/stack.py
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: up down logs status test bootstrap lint unit template integration bench deploy-bootstrap deploy-check

bootstrap: ## install the local tools into .venv and the model into .model (once)
	infra/local/bootstrap.sh
	infra/model/fetch.sh >/dev/null

up: bootstrap ## start (or reuse) the whole local stack
	$(STACK) up

down: ## stop everything `make up` started
	@if [[ -x $(PY) ]]; then $(STACK) down; fi

logs: ## follow the logs of every local process
	$(STACK) logs

status:
	$(STACK) status

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace --lib --bins

template: bootstrap
	cfn-lint template.yaml

deploy-bootstrap: ## install the deployment check tools (.venv-deploy, .venv-checkov, arm64 target)
	infra/deploy/bootstrap.sh

# Offline checks of the SAM stack: cfn-lint, sam validate, checkov, the
# project's rules (infra/deploy/rules.py) and an arm64 `sam build` that
# prints each bootstrap size.
deploy-check: deploy-bootstrap
	infra/deploy/check.sh

# Integration and end-to-end tests need the stack: start it unless it already
# runs, and stop it afterwards (also on failure) only if this run started it.
integration: bootstrap
	@started=0; \
	trap '[[ $$started == 1 ]] && $(STACK) down' EXIT; \
	if ! $(STACK) status >/dev/null 2>&1; then started=1; $(STACK) up; fi; \
	set -a; . .local/env; set +a; \
	rc=0; cargo test --workspace --test '*' --no-fail-fast -- --nocapture || rc=$$?; \
	exit $$rc

test: bootstrap lint unit template deploy-check integration ## every check, from nothing installed

# The benchmark (long; not part of `make test`): needs the stack of `make up`.
# BENCH_ARGS="--million" loads 1,000,000 jobs; --reuse keeps a loaded database.
# The whole-path figures use the functions built with the perf profile, served
# by a second `cargo lambda watch` that the bench starts and stops.
# Relevance (demo database) and the model's one-thread speed run too; each
# section alone: --relevance-only, --embed-speed-only, --whole-path-only,
# --cold-start-only.
# Cold starts: the bench builds the release bootstraps (the deployed profile,
# for this machine's architecture; the first build takes several minutes) and
# starts each against a local Runtime API. --cold-start-only needs neither the
# perf watch nor the stack: without the stack it measures init alone (and
# migrate's first invocation, which needs no stack).
# --load-only and --fairness-only measure the stack of `make up` through its
# gateway, so they start no perf watch (a second runtime, idle or building,
# beside the load). --text-bound-only (what the bound on a text costs the
# api) needs no stack.
BENCH_ARGS ?=
bench: ## exact scan vs naive HNSW vs the matcher, whole path, relevance, embedding speed, cold starts, text bound, fairness
	@if [[ " $(BENCH_ARGS) " == *" --cold-start-only "* || " $(BENCH_ARGS) " == *" --text-bound-only "* ]]; then \
	  if [[ -f .local/env ]]; then set -a; . .local/env; set +a; fi; \
	  exec cargo run --quiet --profile perf -p jobmatch-bench -- $(BENCH_ARGS); \
	fi; \
	if ! $(STACK) status >/dev/null 2>&1; then echo "make bench needs the local stack: run make up first" >&2; exit 1; fi; \
	set -a; . .local/env; set +a; \
	if [[ " $(BENCH_ARGS) " == *" --load-only "* || " $(BENCH_ARGS) " == *" --fairness-only "* ]]; then \
	  exec cargo run --quiet --profile perf -p jobmatch-bench -- $(BENCH_ARGS); \
	fi; \
	url=$$($(STACK) perf-watch start | tail -1); \
	trap '$(STACK) perf-watch stop' EXIT; \
	cargo run --quiet --profile perf -p jobmatch-bench -- --lambda-url "$$url" --functions-profile perf $(BENCH_ARGS)
