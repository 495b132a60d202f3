"""The Ghost model zoo; importing this package registers every family."""
from . import g_ghost_regnet, ghost_resnet, ghostnet, ghostnetv2  # noqa: F401  (importing registers the models)
from ._registry import DefaultCfg, create_model, get_default_cfg, is_model, list_models, model_family, register_model
from ._weights import CheckpointError, load_checkpoint, load_state_dict

__all__ = ["CheckpointError", "DefaultCfg", "create_model", "get_default_cfg", "is_model", "list_models",
           "load_checkpoint", "load_state_dict", "model_family", "register_model"]
