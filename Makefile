# Two commands do everything on a fresh Debian machine with Python 3.11+:
#   make demo   set up (.venv, ffmpeg if missing), generate sample videos, ingest, query
#   make test   the whole test suite (what .ci/run calls)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export EDVMP_HOME ?= $(CURDIR)/.edvmp
SAMPLES := $(CURDIR)/samples

.PHONY: setup demo test dagster-job lint ffmpeg prometheus lock audit stack stack-down bench clean

# constraints.txt pins every package (the locked set pip-audit checks); `make lock` renews it.
$(BIN)/edvmp: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,local]'
	touch $(BIN)/edvmp

lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -e '.[dev,local]'
	{ sed -n '1,2p' constraints.txt; .venv-lock/bin/pip freeze --exclude-editable | grep -v '^-e'; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .venv-lock

# Debian's Prometheus server, for the dashboard test (scrapes `edvmp serve` on 127.0.0.1).
prometheus:
	@command -v prometheus >/dev/null || { \
	  echo "installing prometheus from Debian's packages"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }

ffmpeg:
	@command -v ffprobe >/dev/null && command -v ffmpeg >/dev/null || { \
	  echo "installing ffmpeg from Debian's packages"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q ffmpeg; }

setup: ffmpeg $(BIN)/edvmp

demo: setup
	$(BIN)/edvmp samples $(SAMPLES)
	@# Exit 1 means "some objects failed": the samples include two broken files on purpose.
	$(BIN)/edvmp ingest $(SAMPLES) || [ $$? -eq 1 ]
	$(BIN)/edvmp query "SELECT object_key, video_codec, width, height, round(fps, 3) AS fps, rotation, audio_codec FROM videos ORDER BY 1"
	$(BIN)/edvmp query "SELECT v.object_key, s.summary FROM videos v JOIN summaries s USING (partition_key) ORDER BY 1"
	$(BIN)/edvmp check
	$(BIN)/edvmp incidents summary

test: setup prometheus
	$(BIN)/ruff check edvmp_pipeline edvmp_pipeline_tests benchmarks observability
	$(BIN)/python -m edvmp_pipeline.devtools.supply_chain
	$(BIN)/pytest -q

# Dagster's own CLI on the same assets (what CI runs after the tests): register the sample
# library's versions, then `dagster job execute` over their partition range.
dagster-job: setup
	$(BIN)/edvmp samples --no-broken $(SAMPLES)-ci >/dev/null
	@set -euo pipefail; export DAGSTER_HOME="$(EDVMP_HOME)/dagster"; \
	range=$$($(BIN)/edvmp register $(SAMPLES)-ci --range); \
	first=$${range%%...*}; last=$${range##*...}; \
	$(BIN)/dagster job execute -m edvmp_pipeline.definitions -j ingest_videos \
	  --tags "{\"dagster/asset_partition_range_start\": \"$$first\", \"dagster/asset_partition_range_end\": \"$$last\"}"; \
	$(BIN)/edvmp query "SELECT status, count(*) AS versions FROM jobs WHERE source = '$(SAMPLES)-ci' GROUP BY ALL"

lint: setup
	$(BIN)/ruff check edvmp_pipeline edvmp_pipeline_tests benchmarks observability
	$(BIN)/ruff format --check edvmp_pipeline edvmp_pipeline_tests benchmarks observability

audit: setup
	$(BIN)/python -m edvmp_pipeline.devtools.supply_chain

bench: setup
	$(BIN)/python benchmarks/ingest_throughput.py

# The event-driven stack: the S3 server (SeaweedFS, keeps running) and Dagster's webserver and
# daemon (what `dagster dev` starts) in the foreground with the sensors on. Ctrl-C stops
# Dagster; `make stack-down` stops S3 (data kept).
DAGSTER_PORT ?= 3000
stack: setup
	@eval "$$($(BIN)/edvmp stack up)" && \
	export DAGSTER_HOME="$$($(BIN)/python -c 'from edvmp_pipeline.adapters.dagster_instance import ensure_dagster_home; print(ensure_dagster_home())')" && \
	echo "S3 $$EDVMP_S3_ENDPOINT_URL bucket $$EDVMP_BUCKET; Dagster UI http://127.0.0.1:$(DAGSTER_PORT)" && \
	echo "another shell: eval \"\$$($(BIN)/edvmp stack up)\" && $(BIN)/edvmp upload FILE" && \
	exec $(BIN)/python -m edvmp_pipeline.devtools.dagster_services --port $(DAGSTER_PORT)

stack-down:
	$(BIN)/edvmp stack down

clean:
	rm -rf .edvmp $(SAMPLES) $(SAMPLES)-ci
