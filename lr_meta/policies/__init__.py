"""lr_meta.policies: trained LR controllers as portable artifacts.

A ``Controller`` (spec + params) acts in user code through
``lr_meta.optax.controlled``: the spec says what it observes and how its
action changes the LR, ``networks`` holds the Flax modules that act, and
``load_controller`` / ``save_controller`` / ``pretrained_controller`` read
and write the file format. Nothing here imports agent training code.
"""

from lr_meta.policies.controller import Controller
from lr_meta.policies.controller import ControllerSpec
from lr_meta.policies.controller import load_controller
from lr_meta.policies.controller import make_controller
from lr_meta.policies.controller import pretrained_controller
from lr_meta.policies.controller import pretrained_names
from lr_meta.policies.controller import save_controller

__all__ = [
    "Controller", "ControllerSpec", "load_controller", "make_controller",
    "pretrained_controller", "pretrained_names", "save_controller",
]
