# levelfield: the two commands are `make report` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: report test install lock lab sample calibrate bench clean

report: $(STAMP)  ## full report on the bundled sample data -> reports/sample/; case studies of the real reference data -> reports/meta_ad_library/, reports/dsa_transparency/
	$(BIN)/levelfield run --data data/sample --out reports/sample
	$(BIN)/levelfield run --source meta-ad-library --data data/reference/meta_ad_library --out reports/meta_ad_library
	$(BIN)/levelfield run --source dsa-tdb --data data/reference/dsa_tdb --out reports/dsa_transparency

test: $(STAMP)  ## the test suite
	$(BIN)/python -m pytest -q

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

lock:  ## re-pin every dependency (needs uv)
	uv pip compile pyproject.toml --extra report --extra test --python-version 3.11 --generate-hashes -o requirements.lock

lab: $(STAMP)  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

sample: $(STAMP)  ## regenerate the committed synthetic sample world
	rm -rf data/sample && $(BIN)/levelfield simulate --out data/sample --scenario seed-case --seed 20230601

calibrate: $(STAMP)  ## type I error and CI coverage of the battery on 300 simulated worlds per kind -> reports/calibration/
	$(BIN)/python bench/calibrate.py --worlds 300 --out reports/calibration

clean:
	rm -rf $(VENV) reports/sample/figures .pytest_cache

install-spark: $(STAMP)  ## the Spark engine (pyspark, pinned in requirements-spark.lock); needs Java 17+
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-spark.lock
