"""Weight files on disk: the error types, the metadata key, and the one atomic saver.

Every checkpoint mindghost writes (training checkpoints, converted weights) goes through `atomic_save`, so a
crash or a full disk leaves either the old file or the complete new one, never a partial file.
"""
import json
import os
from typing import Any, Dict, Union

from ..errors import CheckpointError, CheckpointSaveError

META_KEY = "mindghost_meta"  # the JSON entry that makes a checkpoint self-describing
TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt", ".bin")  # read by the torch-free reader (weights.pth)


def decode_meta(raw: Any, path: str) -> Dict[str, Any]:
    """The `META_KEY` entry of the checkpoint at `path` (a JSON string, as MindSpore returns it) as a dict;
    CheckpointError naming the file when it is not valid JSON."""
    try:
        return json.loads(raw if isinstance(raw, str) else str(raw))
    except ValueError as e:
        raise CheckpointError(f"'{path}': its '{META_KEY}' entry is not valid JSON ({e})") from e


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def fsync_dir(path: str) -> None:
    """Flush a directory entry (a rename) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(cell_or_params, path: str, meta: Union[Dict[str, Any], str], verify: bool = False) -> None:
    """Write `cell_or_params` (a Cell, or MindSpore's [{"name", "data"}] list) to the `.ckpt` at `path` with the
    metadata `meta` (a dict, or a JSON string already made) under `META_KEY`: to a temporary file beside it,
    fsync, then rename over `path`. `verify=True` reads the file back first and checks names and meta.

    Raises CheckpointSaveError naming the file and the reason (ENOSPC, EACCES, ...); nothing is left behind.
    """
    import mindspore as ms

    meta_json = meta if isinstance(meta, str) else json.dumps(meta, default=str)
    head, tail = os.path.split(path)
    prefix = f".{tail}.tmp{os.getpid()}."
    tmp = os.path.join(head, prefix + "ckpt")  # save_checkpoint appends .ckpt to any other suffix
    try:
        ms.save_checkpoint(cell_or_params, tmp, append_dict={META_KEY: meta_json})
        if verify:
            written = ms.load_checkpoint(tmp)
            names = set(cell_or_params.parameters_dict()) if isinstance(cell_or_params, ms.nn.Cell) else \
                {d["name"] for d in cell_or_params}
            if set(written) != names | {META_KEY} or written[META_KEY] != meta_json:
                raise CheckpointSaveError(f"the checkpoint written to '{tmp}' does not read back as saved")
        os.chmod(tmp, 0o644)  # MindSpore leaves 0o400, which the user then cannot overwrite or share easily
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # ENOSPC, EACCES, ... (MindSpore raises OSError; older versions wrap it)
        for f in os.listdir(head or "."):  # ours, and MindSpore's own `<tmp>.tmp` staging file
            if f.startswith(prefix):
                _remove_quietly(os.path.join(head, f))
        reason = f"{e.strerror} (errno {e.errno})" if isinstance(e, OSError) and e.strerror else str(e)
        raise CheckpointSaveError(
            f"could not save checkpoint '{path}': {reason}. The previous checkpoints in '{head or '.'}' are intact; "
            "free disk space (or fix the permissions) and rerun the same command (a training run resumes from the "
            "last checkpoint)."
        ) from e
    fsync_dir(os.path.dirname(os.path.abspath(path)))
