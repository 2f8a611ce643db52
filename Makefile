# Two entry points for a fresh machine: `make run` and `make test`. Both create .venv in the repo root.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup data run fit test lint clean

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

test: setup
	$(PY) -m pytest -m "" --durations=25

lint: setup
	$(VENV)/bin/ruff check hornet tests && $(VENV)/bin/ruff format --check hornet tests

clean:
	rm -rf $(VENV) runs .pytest_cache
