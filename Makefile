# The two set-up commands of the README: `make run` (the main job) and `make test`.
PY ?= python3

.PHONY: install run test test-quick bench tasks browser

install:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,data]'

# the main job: the budget recipe that wins at make run's size (README: The main job)
run: install
	$(PY) -m gptkit train --preset cpu-4min

# Debian's chromium for the playground's browser test (as root, with apt-get); elsewhere that test
# is skipped and says why. Playwright drives this binary: it never downloads a browser.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1; } || \
	  echo "chromium is not installed: tests/serve/test_playground.py will be skipped"

test: install browser
	$(PY) -m ruff check gptkit tests benchmarks
	$(PY) -m pytest -q

# The quick subset while developing (seconds to a couple of minutes): everything but the tests
# marked slow (end-to-end training runs, torchrun jobs, SIGKILL and 124M-shape tests).
test-quick:
	$(PY) -m ruff check gptkit tests benchmarks
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/bench_train.py

# the README's task table: two real corpora, pretrain + fine-tune + score (about 45 minutes on 2 cores: po-en-de 7 + 10, pydoc 20 + 6, plus preparing and scoring)
tasks: install
	$(PY) benchmarks/tasks.py
