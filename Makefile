# The two set-up commands of the README: `make run` (the main job) and `make test`.
PY ?= python3

.PHONY: install run test test-quick bench tasks

install:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,data]'

run: install
	$(PY) -m gptkit train

test: install
	$(PY) -m ruff check gptkit tests benchmarks
	$(PY) -m pytest -q

# The quick subset while developing (seconds to a couple of minutes): everything but the tests
# marked slow (end-to-end training runs, torchrun jobs, SIGKILL and 124M-shape tests).
test-quick:
	$(PY) -m ruff check gptkit tests benchmarks
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/bench_train.py

# the README's task table: two real corpora, pretrain + fine-tune + score (about 25 minutes on 2 cores)
tasks: install
	$(PY) benchmarks/tasks.py
