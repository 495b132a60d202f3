"""The Ghost model zoo; importing this package registers every family."""
from ..runtime import quiet_cell_teardown
from ..weights import CheckpointError, load_checkpoint, load_state_dict  # re-exported: the public loading API
from . import g_ghost_regnet, ghost_resnet, ghostnet, ghostnetv2, ghostnetv3  # noqa: F401  (registers models)
from ._manipulate import check_fusion, count_batchnorms, fuse_bn, layer_macs, max_diff, trace_forward
from ._registry import DefaultCfg, create_model, get_default_cfg, is_model, list_models, model_family, register_model
from ._reparam import forget_compiled_graphs, reparameterize_model

quiet_cell_teardown()  # no "Exception ignored in Cell.__del__" flood when a user's script exits (MindSpore 2.10)

__all__ = ["CheckpointError", "DefaultCfg", "check_fusion", "count_batchnorms", "create_model",
           "forget_compiled_graphs", "fuse_bn", "get_default_cfg", "is_model", "layer_macs", "list_models",
           "load_checkpoint", "load_state_dict", "max_diff", "model_family", "register_model", "reparameterize_model",
           "trace_forward"]
