"""ONNX export of model bundles, its parity check, and the onnxruntime predictor.

- :mod:`tabpipe.onnx.export`: :func:`~tabpipe.onnx.export.convert_bundle`, a fitted
  pipeline to ONNX (or the reason it cannot be), with the graph's input types.
- :mod:`tabpipe.onnx.converters`: one module per converter tabpipe supplies where
  skl2onnx's own is missing or not faithful.
- :mod:`tabpipe.onnx.parity`: how closely the graph reproduces scikit-learn, and the
  verdict the blessing gate turns into its ``onnx parity`` check.
- :mod:`tabpipe.onnx.predictor`: the serving fast path on onnxruntime.

Which estimators convert, and with which converter, is decided by the estimator
registry (:mod:`tabpipe.estimators`). This package sits below the stages,
serving and the KFP tasks and imports none of them. Nothing is imported here,
so the predictor loads without scikit-learn or skl2onnx.
"""
