# The two commands of the README: `make run` (the whole local stack) and `make test`.
.PHONY: run test lint bootstrap lock bench

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	.venv/bin/python -m devstack.dev

test: lint
	.venv/bin/python -m pytest

# ruff (lint, format) and mypy (strict on the runtime), as configured in pyproject.toml; make test runs it first.
lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# ARGS: more options for the script, e.g. make bench ARGS=--quick
bench: bootstrap
	.venv/bin/python -m bench --out bench-results.json $(ARGS)

# Re-pin every dependency after a change to pyproject.toml.
lock:
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install -q '.[dev]'
	.venv-lock/bin/pip freeze --exclude-editable | grep -v '^hitl' > requirements.lock
	rm -rf .venv-lock build/lib build/bdist.*  # the wheel build's leftovers (stale copies of hitl)
