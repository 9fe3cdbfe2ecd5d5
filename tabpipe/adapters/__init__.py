"""Stage adapters: one module per pipeline stage, files in and files out.

Each adapter reads its inputs from paths, calls the stage's pure logic
(:mod:`tabpipe.stages`), writes its outputs to the paths it is given and returns
a typed result whose :meth:`metadata` the component attaches to its artifacts
(keys from :mod:`tabpipe.artifacts`). Adapters know nothing about KFP, so the
same code runs inside a component, in one process for the benchmark, and in
tests; components stay a few lines each.

Policy (which champion to compare with, how a bundle is assembled) lives below,
in :mod:`tabpipe.champion` and :mod:`tabpipe.bundle`, not here.
"""
