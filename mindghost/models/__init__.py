"""The Ghost model zoo; importing this package registers every family."""
from ..weights import CheckpointError, load_checkpoint, load_state_dict  # re-exported: the public loading API
from . import g_ghost_regnet, ghost_resnet, ghostnet, ghostnetv2, ghostnetv3  # noqa: F401  (registers models)
from ._registry import DefaultCfg, create_model, get_default_cfg, is_model, list_models, model_family, register_model
from .ghostnetv3 import reparameterize_model

__all__ = ["CheckpointError", "DefaultCfg", "create_model", "get_default_cfg", "is_model", "list_models",
           "load_checkpoint", "load_state_dict", "model_family", "register_model", "reparameterize_model"]
