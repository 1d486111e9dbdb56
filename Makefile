# The two set-up commands of the README: `make run` (the main job) and `make test`.
PY ?= python3

.PHONY: install run test bench

install:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,data]'

run: install
	$(PY) -m gptkit train

test: install
	$(PY) -m ruff check gptkit tests benchmarks
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_train.py
