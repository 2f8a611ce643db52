# Two entry points for a fresh machine: `make run` and `make test`. Both create .venv in the repo root.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup data run fit test test-gpu offline-bundle lint notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP) data

# Fashion-MNIST from Debian's dataset-fashion-mnist (the default dataset); skipped with a message elsewhere.
data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "note: install Debian's dataset-fashion-mnist (as root) or set HORNET_DATA_DIR to a Fashion-MNIST copy"; fi

# the main job: the interaction-order ablation suite (smoke scale), then its table and plots
run: setup
	$(VENV)/bin/hornet fit --config experiments/order_ablation.yaml
	$(VENV)/bin/hornet report runs/order_ablation --plots runs/order_ablation/plots

# one default training run (lightning_cli.yaml) and its test
fit: setup
	$(VENV)/bin/hornet fit && $(VENV)/bin/hornet test

# the notebooks executed in place on the published results (results/, no training): the outputs committed with them
notebooks: setup
	HORNET_RUNS=$(CURDIR)/results HORNET_RESULTS=$(CURDIR)/results/order_ablation \
		$(VENV)/bin/jupyter execute --inplace --timeout=600 notebooks/ablation_analysis.ipynb notebooks/paper_tables.ipynb

test: setup
	$(PY) -m pytest -m "" --durations=25

# The GPU check (docs/speed.md): the gpu-marked tests, the bf16-mixed step profile by op category and the GF filter
# paths raced on CUDA, `hornet bench` on CUDA (ours vs the released code's transcription, ConvNeXt-T and Swin-T; fp32,
# bf16-mixed; batch 128), a short bf16-mixed fit and its test, then the compiled bench, block by block (last:
# compilation is the slowest step). It needs no .venv: `make test-gpu PY=python3` runs it with a
# preinstalled torch and hornet on PYTHONPATH. Every step runs even when one fails; the exit status says whether any
# did. Without CUDA the tests skip and the rest is left out, with a message.
GPU_MODELS := hornet_tiny_7x7_reference hornet_tiny_7x7 hornet_tiny_gf_reference hornet_tiny_gf convnext_tiny \
	swin_tiny_patch4_window7_224
GPU_BENCH := $(PY) -m hornet.cli bench --device cuda --batch-size 128 --img-size 224 --rounds 5 --steps 3 --peak \
	--format markdown
test-gpu:
	@failed=""; step() { echo "== test-gpu [$$(date +%T)]: $$*"; "$$@" || failed="$$failed\n  $$*"; }; \
	step $(PY) -m pytest -m gpu -p no:cacheprovider -rs tests; \
	if $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
		$(PY) -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"; \
		step $(GPU_BENCH) --precision bf16-mixed --profile --steps 3 hornet_tiny_7x7 hornet_tiny_gf convnext_tiny; \
		step $(GPU_BENCH) --filter-paths hornet_tiny_gf; \
		step $(GPU_BENCH) $(GPU_MODELS); \
		step $(GPU_BENCH) --precision bf16-mixed $(GPU_MODELS); \
		step $(PY) -m hornet.cli fit --trainer.accelerator gpu --trainer.precision bf16-mixed --trainer.max_epochs 2 \
			--data.init_args.limit_train 20000 --runs_dir runs --run_name gpu_check; \
		step $(PY) -m hornet.cli test --trainer.accelerator gpu --runs_dir runs --run_name gpu_check; \
		step $(GPU_BENCH) --precision bf16-mixed --compile --mode train hornet_tiny_7x7 hornet_tiny_gf convnext_tiny; \
	else echo "test-gpu: no CUDA device here: the gpu tests were skipped and no GPU benchmark ran"; fi; \
	if [ -n "$$failed" ]; then printf "test-gpu: these steps failed:$$failed\n"; exit 1; fi

# For a GPU machine with its own python 3.12 and torch but no package registry (docs/speed.md): the wheels hornet
# needs beyond what such an image holds, and a copy of Fashion-MNIST, into .offline/ (git-ignored). There:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .offline/wheels/*.whl
#   export PYTHONPATH=/tmp/site:$PWD HORNET_DATA_DIR=$PWD/.offline/fashion-mnist; make test-gpu PY=python3
OFFLINE_WHEELS := jsonargparse==4.53.0 omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 docstring-parser==0.18.0 \
	typeshed-client==2.15.0 timm==1.0.31 pycocotools==2.0.11
offline-bundle: data
	rm -rf .offline && mkdir -p .offline/wheels .offline/fashion-mnist
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .offline/wheels $(OFFLINE_WHEELS)
	cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .offline/fashion-mnist/
	du -sh .offline/*

lint: setup
	$(VENV)/bin/ruff check hornet tests && $(VENV)/bin/ruff format --check hornet tests

clean:
	rm -rf $(VENV) runs .pytest_cache
