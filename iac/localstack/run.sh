#!/usr/bin/env bash
# Start LocalStack in host mode on 127.0.0.1:4566 (S3, STS, IAM, Step Functions, CloudWatch,
# Logs), run the LocalStack tests against it, stop it. make localstack-test runs this.
#
#   iac/localstack/run.sh [pytest args...]
#
# Needs Python 3.13 (PATH, or pyenv's) for .venv-localstack; without it the tests are skipped
# and this says why. DynamoDB (Java 21) and Lambda (Docker) cannot start here: the tests send
# DynamoDB to an in-process moto server (AWS_ENDPOINT_URL_DYNAMODB) and keep Lambda out.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv-localstack"
PY="$ROOT/.venv/bin/python"
PORT="${LOCALSTACK_PORT:-4566}"
DATA="$(mktemp -d)"

find_python313() {
  for p in python3.13 "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
    if "$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

if [[ ! -x "$VENV/bin/python" || "$ROOT/iac/localstack/requirements.txt" -nt "$VENV/.installed" ]]; then
  if ! py313="$(find_python313)"; then
    echo "localstack: no Python 3.13 on this machine (PATH or pyenv): LocalStack 2026.3.0 runs in host mode only there; the LocalStack tests are skipped" >&2
    exec "$PY" -m pytest -q -p no:cacheprovider "$ROOT/tests/contract/test_localstack.py" "$@"
  fi
  rm -rf "$VENV"
  "$py313" -m venv "$VENV"
  env -u PYTHONPATH "$VENV/bin/python" -m pip install --quiet -r "$ROOT/iac/localstack/requirements.txt"
  touch "$VENV/.installed"
fi

env -u PYTHONPATH GATEWAY_LISTEN="127.0.0.1:$PORT" SERVICES=s3,sts,iam,stepfunctions,cloudwatch,logs \
  DISABLE_EVENTS=1 PERSISTENCE=0 \
  "$VENV/bin/python" -m localstack.runtime.main >"$DATA/localstack.log" 2>&1 &
LS_PID=$!
cleanup() {
  kill "$LS_PID" 2>/dev/null || true
  wait "$LS_PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
for _ in $(seq 1 120); do
  if curl -sf "http://127.0.0.1:$PORT/_localstack/health" >/dev/null; then break; fi
  if ! kill -0 "$LS_PID" 2>/dev/null; then
    tail -20 "$DATA/localstack.log" >&2
    echo "localstack: it exited before it was ready" >&2
    exit 1
  fi
  sleep 0.5
done
LOCALSTACK_ENDPOINT="http://127.0.0.1:$PORT" "$PY" -m pytest -q -p no:cacheprovider \
  "$ROOT/tests/contract/test_localstack.py" "$@"
