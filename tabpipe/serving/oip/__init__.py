"""Generated Open Inference Protocol gRPC code (see grpc_predict_v2.proto and generate.sh)."""
