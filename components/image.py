"""The container image every component runs in (built from docker/Dockerfile)."""

from tabpipe import __version__

# kind loads this tag with `kind load docker-image`; a fixed tag (not :latest) keeps
# the kubelet from trying to pull it.
BASE_IMAGE = f"tabpipe:{__version__}"
