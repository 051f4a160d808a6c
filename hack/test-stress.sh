#!/usr/bin/env bash
# make test-stress: the test suite RUNS times in a row (default 5) while all cores but one are
# saturated by busy loops (stress-ng --cpu if installed, else Python busy loops), stopping at the
# first failure. A test that fails here races with the machine's load (see docs/reliability.md).
#
#   RUNS=5 STRESS_CPUS=<nproc - 1> PYTEST_ARGS="--ignore=tests/e2e tests" hack/test-stress.sh
set -euo pipefail

PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-5}
cpus=$(nproc)
STRESS_CPUS=${STRESS_CPUS:-$(( cpus > 1 ? cpus - 1 : 1 ))}
PYTEST_ARGS=${PYTEST_ARGS:---ignore=tests/e2e tests}

busy=()
stop_busy() {
	for pid in "${busy[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${busy[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_busy EXIT INT TERM

if command -v stress-ng >/dev/null; then
	stress-ng --cpu "$STRESS_CPUS" --quiet &
	busy+=($!)
	echo "test-stress: stress-ng --cpu $STRESS_CPUS"
else
	for _ in $(seq "$STRESS_CPUS"); do
		"$PYTHON" -c 'while True: pass' &
		busy+=($!)
	done
	echo "test-stress: $STRESS_CPUS Python busy loop(s)"
fi

for run in $(seq "$RUNS"); do
	echo "test-stress: run $run of $RUNS: pytest $PYTEST_ARGS"
	# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
	if ! "$PYTHON" -m pytest -q -p no:cacheprovider $PYTEST_ARGS; then
		echo "test-stress: run $run of $RUNS FAILED under load" >&2
		exit 1
	fi
done
echo "test-stress: $RUNS of $RUNS runs passed under load"
