#!/usr/bin/env bash
# bench/run.sh [N] [bench.py options]: the loading benchmark (bench/README.md, "bench.py").
# N defaults to 1,000,000. Writes bench/RESULTS.md. Uses $BENCH_PG (a postgresql:// URL) when
# set, otherwise a throwaway PostgreSQL 15 cluster that it stops and removes at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000000
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    N="$1"
    shift
fi
# dlt and its extras live in a venv of their own (not committed); py-spy profiles.
if ! bench/.venv-dlt/bin/python -c "import dlt, sqlalchemy, connectorx, adbc_driver_postgresql" 2>/dev/null; then
    echo "making bench/.venv-dlt (dlt, connectorx, ADBC, pyarrow, py-spy)" >&2
    python3 -m venv bench/.venv-dlt
    bench/.venv-dlt/bin/pip install -q "dlt[postgres,parquet,sql_database]" sqlalchemy connectorx \
        adbc-driver-postgresql pyarrow "psycopg[binary]" py-spy ||
        echo "bench/.venv-dlt: some packages could not be installed (see above)" >&2
fi
export BENCH_COMMAND="bench/run.sh $N${*:+ $*}"
exec .venv/bin/python bench/bench.py --rows "$N" "$@"
