"""The converters tabpipe supplies to skl2onnx, one module each.

skl2onnx's stock converters are not faithful for these, so they are replaced
for the duration of one conversion (nothing is registered globally):

- :mod:`.engineered`: tabpipe's :class:`~tabpipe.features.EngineeredFeatures` (no stock converter).
- :mod:`.to_object`: tabpipe's :class:`~tabpipe.features.ToObject` (an identity on string inputs).
- :mod:`.imputer`: ``SimpleImputer``; the stock one drops ``add_indicator`` columns,
  rounds the statistics to float32 and rejects NaN as a string missing value.
- :mod:`.one_hot`: ``OneHotEncoder``; the stock one maps unknown categories to an error
  instead of the infrequent column or all zeros.
- :mod:`.trees`: RandomForest* and HistGradientBoosting*; the stock converter rounds
  split thresholds to float32. Estimators choose it in the registry (:mod:`tabpipe.estimators`).
"""
