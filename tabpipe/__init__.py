"""tabpipe: an end-to-end tabular ML pipeline on Kubeflow Pipelines.

Importing this package does no work: no directories, no tracking URIs, no clients.
"""

__version__ = "0.1.0"
