"""KServe SDK peer for bench/bench_serving.py: a custom ``kserve.Model`` serving a joblib pipeline.

Runs in its own venv (``.state/bench-venvs/kserve``, kserve 0.21.0). ``predict`` builds a
DataFrame from the request's ``pd`` inputs (one input per column) with ``as_dataframe`` (gRPC
``raw_input_contents`` decoded into each input's data first, as KServe does for REST binary
tensors, since ``as_dataframe`` reads only that) and calls the pipeline's ``predict_proba``,
returning the predicted labels (``predict``) and the probabilities (``predict_proba``).
Everything else is KServe's default ``ModelServer`` (one uvicorn worker, gRPC on its own port,
latency logging on).

Usage: python kserve_server.py --model-file model.joblib --model-name NAME --http-port P --grpc-port G
"""

from __future__ import annotations

import argparse

import joblib
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.utils.utils import generate_uuid


class PipelineModel(Model):
    """A fitted scikit-learn classifier pipeline behind the Open Inference Protocol."""

    def __init__(self, name: str, model_file: str) -> None:
        super().__init__(name)
        self.model_file = model_file
        self.pipeline = None
        self.load()

    def load(self) -> bool:
        """Load the joblib file."""
        self.pipeline = joblib.load(self.model_file)
        self.ready = True
        return self.ready

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, response_headers=None
    ) -> InferResponse:
        """Labels and class probabilities for the rows in ``payload``."""
        for tensor in payload.inputs:
            if not tensor.data:
                # KServe 0.21's as_dataframe reads each input's ``data``, which gRPC raw_input_contents
                # (tritonclient's default) leave empty: decode them into ``data`` as KServe's own REST
                # handler does with binary tensors, so every protocol takes the same path below.
                tensor.set_data_from_numpy(tensor.as_numpy(), binary_data=False)
        frame = payload.as_dataframe()
        proba = self.pipeline.predict_proba(frame)
        labels = self.pipeline.classes_[proba.argmax(axis=1)]
        outputs = [
            InferOutput(name="predict", shape=list(labels.shape), datatype="INT64", data=labels.tolist()),
            InferOutput(
                name="predict_proba", shape=list(proba.shape), datatype="FP64", data=proba.ravel().tolist()
            ),
        ]
        # An id is required in the response; KServe's own helpers generate one the same way.
        return InferResponse(
            model_name=self.name, infer_outputs=outputs, response_id=payload.id or generate_uuid()
        )


def main() -> None:
    """Start the model server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args, _ = parser.parse_known_args()
    model = PipelineModel(args.model_name, args.model_file)
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1).start([model])


if __name__ == "__main__":
    main()
