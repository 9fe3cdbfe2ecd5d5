"""Model serving over the Open Inference Protocol (V2) REST API.

Nothing here runs at import time. The server (``tabpipe serve``) loads a
checksum-verified bundle and answers ``/v2/...`` requests; a predictor is
either onnxruntime (the fast path) or the scikit-learn bundle.
"""
