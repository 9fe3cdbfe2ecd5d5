"""Deploying a bundle to a Kubernetes cluster: Seldon Core, KServe, or a plain Deployment.

``objects`` renders the serving objects (pure data), ``status`` reads whether a rollout
finished or failed (pure), and ``rollout`` drives the API server: apply, wait, smoke-test,
and restore the previous object on any failure. The deploy adapter moves ``@champion``
only after :func:`rollout.deploy` returns.
"""
