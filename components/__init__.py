"""KFP v2 components: thin typed wrappers around the stage adapters (:mod:`tabpipe.adapters`).

Every component is a lightweight Python component whose ``base_image`` is the
project's image, with ``install_kfp_package=False`` and no
``packages_to_install``: the body imports the installed ``tabpipe`` package.
This is the one form that runs both on a cluster and in KFP's local
``SubprocessRunner``.
"""

from components.deploy import deploy
from components.evaluate import evaluate
from components.ingest import ingest
from components.outcome import record_outcome
from components.register import register
from components.train import train
from components.transform import transform
from components.validate import validate

__all__ = ["deploy", "evaluate", "ingest", "record_outcome", "register", "train", "transform", "validate"]
