#!/usr/bin/env bash
# Regenerate the committed gRPC code from grpc_predict_v2.proto.
#
# grpcio-tools is pinned to 1.81.1 (libprotoc 33.5): its generated code needs protobuf >= 6.33.5
# at run time, which fits kfp's protobuf < 7 pin; grpcio-tools 1.85 would pull protobuf 7 into the
# project's environment. So it runs in a throwaway venv, never in .venv.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
venv="${PROTOC_VENV:-${TMPDIR:-/tmp}/tabpipe-protoc-venv}"
python="${PYTHON:-python3.11}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet "grpcio-tools==1.81.1" "protobuf==6.33.6"
cd "$repo"
"$venv/bin/python" -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. \
  tabpipe/serving/oip/grpc_predict_v2.proto
# Generated code is not linted (its own style), and says so.
for file in tabpipe/serving/oip/grpc_predict_v2_pb2.py tabpipe/serving/oip/grpc_predict_v2_pb2.pyi \
  tabpipe/serving/oip/grpc_predict_v2_pb2_grpc.py; do
  { echo "# ruff: noqa"; echo "# fmt: off"; cat "$file"; } > "$file.tmp" && mv "$file.tmp" "$file"
done
echo "generated $(ls tabpipe/serving/oip/grpc_predict_v2_pb2*.py* | tr '\n' ' ')"
