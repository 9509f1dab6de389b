# One entry point for a new user: `make demo` and `make test` set everything up themselves.
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
# Airflow, to check deploy/airflow_dag.py, in a venv of its own: its pins would move mlflow's.
AIRFLOW_VENV := .venv-airflow
# Delta Lake for Spark 4.0 (Scala 2.13). Keep in step with delta-spark in setup.py.
DELTA_VERSION := 4.0.1
DELTA_JARS  := io.delta:delta-spark_2.13:$(DELTA_VERSION) io.delta:delta-storage:$(DELTA_VERSION)
SAMPLE      := data/creditcard_sample.csv.gz
# The real sample spans two days; with conf/local.toml's start date they are these.
DEMO_START  := 2013-09-01
DEMO_END    := 2013-09-02
# make demo-payments: the Handbook simulator's 183 days from 2018-04-01; train holds out the
# last 7 (conf/payments.toml), which are the days scored and monitored.
PAYMENTS_DAYS    := 183
PAYMENTS_LANDING := lake/payments/landing
PAYMENTS_START   := 2018-09-24
PAYMENTS_END     := 2018-09-30

.PHONY: setup demo demo-payments cluster-demo cluster-up cluster-down test test-quick lint ui serve bench bench-generate bench-features \
        bench-ingest-payments bench-handbook bench-serve bench-online clean-state clean card-key

# The driver JVM's class-data archive (pipelines/core/jvm_archive.py): written once per JVM and
# pyspark, about a minute; each job then starts about 3 s sooner. Without it jobs still run.
setup: $(VENV)/.installed .jars/.fetched
	@if [ -f jobs/_class_archive.py ]; then $(PY) -m pipelines.core.jvm_archive_build \
	  || echo "make setup: no class-data archive written; jobs run, starting about 3 s slower" >&2; fi

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[batch,serve,test,bench,cluster,analyst]"
	touch $@

$(AIRFLOW_VENV)/.installed: deploy/airflow-requirements.txt deploy/airflow-constraints.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -c deploy/airflow-constraints.txt -r deploy/airflow-requirements.txt
	touch $@

# Maven Central through Maven itself: pinned, cached in ~/.m2, copied into .jars (git-ignored).
.jars/.fetched: Makefile
	mkdir -p .jars
	for artifact in $(DELTA_JARS); do \
	  mvn --batch-mode --quiet dependency:copy -Dartifact=$$artifact -DoutputDirectory=.jars || exit 1; \
	done
	touch $@

demo: setup
	./spark-submit.sh ingest --input $(SAMPLE)
	./spark-submit.sh train
	./spark-submit.sh promote
	./spark-submit.sh score --start-date $(DEMO_START) --end-date $(DEMO_END)
	./spark-submit.sh monitor --start-date $(DEMO_START) --end-date $(DEMO_END) || [ $$? -eq 6 ]  # 6: an alert, shown below
	./spark-submit.sh sql --file queries/daily_summary.sql
	./spark-submit.sh sql --file queries/monitoring.sql

# The payments profile end to end on generated data (never real): the Fraud Detection
# Handbook's simulator, its history features, the Handbook's 7/7/7 protocol, then the days
# held out scored and monitored. Prints per day: rows, alerts, frauds caught, Card Precision@100.
demo-payments: setup card-key
	./spark-submit.sh generate --profile payments --days $(PAYMENTS_DAYS) --output $(PAYMENTS_LANDING) --overwrite
	./spark-submit.sh ingest --env payments --input $(PAYMENTS_LANDING)
	./spark-submit.sh features --env payments --all
	./spark-submit.sh train --env payments
	./spark-submit.sh promote --env payments
	./spark-submit.sh score --env payments --start-date $(PAYMENTS_START) --end-date $(PAYMENTS_END)
	./spark-submit.sh monitor --env payments --start-date $(PAYMENTS_START) --end-date $(PAYMENTS_END) || [ $$? -eq 6 ]
	./spark-submit.sh sql --env payments --file queries/payments_daily.sql

# make demo's jobs on real servers on this machine (conf/standalone.toml): PostgreSQL (Debian's
# package, installed when missing), Spark's Hive metastore on it, a Spark standalone master
# with two workers and the history server, an MLflow server with basic authentication; all on
# 127.0.0.1, all stopped at the end, also when a step fails. deploy/README.md says more.
cluster-demo: setup
	deploy/standalone/demo.sh

# The same servers, left running (http://127.0.0.1:8080 Spark, :18080 history, :5500 MLflow);
# `eval "$$(deploy/standalone/cluster.sh env)"` then `./spark-submit.sh <job> --env standalone`.
cluster-up: setup
	deploy/standalone/cluster.sh up

cluster-down:
	deploy/standalone/cluster.sh down

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint deploy/Dockerfile
	$(VENV)/bin/hadolint deploy/serve.Dockerfile

# Then the date and time tests once more with the clock 3 h 30 min behind UTC (a POSIX TZ,
# which needs no time zone database): nothing may depend on the machine's zone.
test: setup lint $(AIRFLOW_VENV)/.installed
	$(VENV)/bin/pytest -n 2 --dist loadfile --no-loadscope-reorder
	TZ=NST+3:30 $(VENV)/bin/pytest -m timezone -p no:cacheprovider -q

# The quick loop while changing code: every test that needs no JVM and no server beyond one it
# starts on loopback (tests/conftest.py marks the others `jvm`); about a minute on 2 cores.
test-quick: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not jvm" -q -p no:cacheprovider

# Speed (issue #12): score, ingest and train against their baselines in the same run (the commit
# before the speed work, Spark ML's transform, the scorer in one process); prints one table.
# About an hour on 2 cores; `$(PY) benchmarks/speed.py --help` for a quicker subset.
bench: setup
	$(PY) benchmarks/speed.py

# Speed and fidelity figures of generate + day-by-day ingest (prints them; takes ~10 minutes).
bench-generate: setup
	$(PY) benchmarks/generate_ingest.py --days 10 --rows-per-day 200000

# History features (issue #23, "Speed"): `features --all` over the Handbook's 183 days x 5,000
# customers against DuckDB's window SQL and the Handbook's pandas method in the same run (every
# transaction compared), 10x the customers, one new day. Prints one table; about half an hour on
# 2 cores. `$(PY) benchmarks/payments_features.py --help` for a smaller run.
bench-features: setup
	$(PY) benchmarks/payments_features.py
# Payments ingest of the generated 183 days into an empty table beside Spark's plain copy of the
# same files, then one new day (issue #23; prints its figures; about 15 minutes on 2 cores). The
# tables are temporary, so without FRAUD_CARD_KEY_SECRET a random secret of this run keys the cards.
bench-ingest-payments: setup
	FRAUD_CARD_KEY_SECRET=$${FRAUD_CARD_KEY_SECRET:-$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(16))')} \
	  $(PY) benchmarks/payments_ingest.py
# The payments model beside scikit-learn's references and the Fraud Detection Handbook's
# published chapter 3 table, on its protocol, with a paired bootstrap over the test days
# (issue #23, section 5; about 8 minutes on 2 cores). docs/payments.md has its latest figures.
bench-handbook: setup
	$(PY) benchmarks/payments_handbook.py

# The online scoring service on 127.0.0.1:8000 ([serve] in conf/$(SERVE_ENV).toml), answering with the
# champion's portable form (no Spark, no JVM). The first run writes a random bearer token to
# .secrets/serve-token (git-ignored, readable only by you); the page is http://127.0.0.1:8000/.
# `make serve SERVE_ENV=payments` serves that environment's champion (its own [mlflow] model_name),
# computing each raw payment's history features from an online store (Redis): without
# $$FRAUD_ONLINE_URL, a local one is started, published into and stopped with the service
# (deploy/standalone/serve.sh; docs/online-features.md).
SERVE_ENV ?= local
serve: setup
	deploy/standalone/serve.sh $(SERVE_ENV)

# The secret conf/payments.toml pseudonymises card numbers with (HMAC-SHA256) when
# FRAUD_CARD_KEY_SECRET is not set: 32 random bytes written once to .secrets/card-key
# (git-ignored, mode 600). Never replaced: another secret gives every card another key, and the
# history already ingested would no longer join up. Keep a copy with the tables it keys.
card-key:
	@if [ -e .secrets/card-key ]; then echo "make card-key: .secrets/card-key exists, kept"; else \
	  (umask 077 && mkdir -p .secrets && $(PYTHON) -c 'import secrets; print(secrets.token_hex(32))' \
	    > .secrets/card-key) && echo "make card-key: wrote .secrets/card-key (mode 600)"; fi

# Latency, throughput and a swap under load of the service against `mlflow models serve` on the
# same champion (run `make demo` first; prints its figures; takes ~5 minutes).
bench-serve: setup
	$(PY) benchmarks/serve_load.py

# Raw payments through fraud-serve and the online store (issue #24): publish's cost, parity on
# a whole day, closed and open loops beside the naive layout and the features in the request,
# AOF's cost. Needs `make demo-payments` first; about 6 minutes. docs/online-features.md.
bench-online: setup
	$(PY) benchmarks/online_load.py

# MLflow 3.17's UI opens an experiment on its GenAI overview unless told the workflow type.
ui: setup
	@echo "open http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning (fraud_detection's runs on a fresh store)"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port 5000

# Removes the local Delta tables and MLflow store (not the venv or jars).
clean-state:
	rm -rf lake mlruns

clean: clean-state
	rm -rf $(VENV) $(AIRFLOW_VENV) .jars build
