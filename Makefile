# The two set-up commands of the README: `make run` (the main job) and `make test`.
PY ?= python3

.PHONY: install run test bench browser

install:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'

run: install
	$(PY) -m gptkit train

# Debian's chromium for the playground's browser test (as root, with apt-get); elsewhere that test
# is skipped and says why. Playwright drives this binary: it never downloads a browser.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1; } || \
	  echo "chromium is not installed: tests/serve/test_playground.py will be skipped"

test: install browser
	$(PY) -m ruff check gptkit tests benchmarks
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_train.py
