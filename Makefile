# The README's two commands are `make test` and `make main`; both set up .venv/ first.
PY := .venv/bin/python
SRC := projects tools demo tests datasets/*.py

.PHONY: setup test main gpu-check lint format clean-env

setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m pytest -q

main: setup
	$(PY) tools/run_synthetic_benchmark.py

# One-GPU performance check (docs/PERFORMANCE.md), figures in output/gpu_check/.
gpu-check: setup
	bash tools/gpu_check.sh

lint: setup
	$(PY) -m black --check $(SRC)
	$(PY) -m isort --check-only $(SRC)
	$(PY) -m flake8 $(SRC)

format: setup
	$(PY) -m isort $(SRC)
	$(PY) -m black $(SRC)

clean-env:
	rm -rf .venv
